"""What each process of a job runs beside training: the Horovod adapter, this node's Ray, its cores, stop signals."""
