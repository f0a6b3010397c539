"""The database writer: the router's journal, replayed, persisted to PostgreSQL exactly once.

Why the journal and not the rings: the journal holds every accepted command with its global
seq, and replaying it through a ``Sequencer`` and the matcher cores (as recovery does) gives
every event and every balance deterministically. Reading a file never gates a ring producer,
so a slow or absent PostgreSQL makes the writer fall behind (lag = journal's last seq -
checkpoint), never the pipeline.

    journal --replay.py--> (seq, command, events) --projection.py--> Batch
            --store.py--> one transaction: COPY into temp tables, INSERT .. ON CONFLICT,
                          checkpoint = the batch's last seq

Modules: ``embedded`` (a private cluster under var/), ``migrate`` (plain SQL files in
``migrations/``), ``copy`` (binary COPY rows), ``projection`` (sans-I/O rows from events),
``replay`` (the journal follower and its snapshots), ``store`` (PostgreSQL), ``writer`` (the
loop: flush on size or age, retry with backoff), ``main`` (the process edge).
"""
