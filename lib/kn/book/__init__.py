"""kn.book: the book: each chapter's findings and figures, tables on the page (report), the results page (results, verdicts),
summaries read across chapters (summaries), the environment record, executing chapters (runner), building the book
(build), SLURM (submit) and the command line (cli)."""
