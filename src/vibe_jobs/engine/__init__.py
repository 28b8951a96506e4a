"""Running jobs: the scheduler (admission, execution, time-outs, retries), claims from a shared store,
recovery of orphaned jobs, the shared timer task and the task set of job runs."""
