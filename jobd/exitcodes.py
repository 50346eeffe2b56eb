"""Exit codes of the `jobd` command: a contract with scripts and systemd.

| code | meaning |
| --- | --- |
| 0 | success (for `jobd run`: drained and stopped cleanly) |
| 1 | runtime failure: database unreachable, unknown job, job in the wrong state; unhealthy |
| 2 | usage: bad arguments, bad JSON, bad duration, missing or invalid config, unknown routine |
| 3 | `jobd run`: a worker could not boot (import error in `modules`, failing `worker_boot`) |
| 4 | the database schema is missing or out of date: run `jobd db upgrade` |

`jobd health` exits 0 when every check passes and 1 when one fails. An unknown
routine is one no worker registered in the store (`jobd routines`): `jobd
enqueue` refuses it unless given `--no-check`.
"""

OK = 0
FAILURE = 1
USAGE = 2
BOOT_ERROR = 3
SCHEMA = 4
