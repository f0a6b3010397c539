-- The CRC-32 of the journal entry at the checkpoint's seq (its slot image), written with it:
-- a writer that starts over a journal whose entry there differs (a tail lost in a host crash
-- under fsync = "none" or "interval", its seqs then given to other commands) refuses to go on
-- rather than leave the database a replay of a history the journal no longer holds.
-- NULL: written before this column (not checked).
ALTER TABLE checkpoint ADD COLUMN IF NOT EXISTS last_crc bigint;
