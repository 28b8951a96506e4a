"""Running jobs: one executor (run, time-outs, settle, retry) fed by a job source - the local queue
(`local`) or claims from a shared store (`claims`), chosen by `sources.make_source` - plus the rules
they share (`admission`, `failures`), recovery of orphaned jobs, the shared timer task and the task
set of job runs."""
