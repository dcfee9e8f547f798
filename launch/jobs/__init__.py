"""The ways to start a job across processes and machines: horovodrun, a Ray cluster, SLURM (srun), Kubernetes."""
