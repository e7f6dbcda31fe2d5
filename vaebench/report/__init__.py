"""`vaebench report`: a sweep's finished runs compared in a table, report.csv, report.md, report.tex and figures
(command.py says which); and the summary a sweep prints at its end (sweep_summary.py). It reads run
folders, never the running code of a run."""
