"""The `twostream` command line and the ways to start a job."""
