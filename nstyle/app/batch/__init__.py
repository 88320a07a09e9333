"""Many stylisations as one resumable job on Dask: the jobs (manifest or cross product), the cluster
(local or by address), submitting and retrying, what runs on a worker, progress over jobs."""
