"""The sink: `site-events` and `sites` into the database (docs/sink.md).

`consumer` (the consumer group, retries, splits around a refused record) hands batches
to `pipeline` (the next batch folded while one is written), which runs `batch`: `load`
reads what a batch touches, `fold` folds it (pure), `write` writes its rows in the
order the schema needs, `shadow` remembers them for what is not committed yet. Beside
them: `rows` (the rows), `projection` (the site projection), `drift` (the projection
rebuilt and compared), `gate` (the write switch), `offsets`, `tables`, `db`, `dberrors`.
"""
