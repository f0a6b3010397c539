-- A batch's trades are written by several connections side by side ("lanes": lane k takes the
-- symbols whose id modulo database.trade_lanes is k), each in a transaction of its own that
-- also moves its lane's checkpoint here: the last seq whose trades of its symbols are all in.
-- The batch's other rows and the checkpoint row commit once every lane has, so a lane is
-- ahead of the checkpoint only after a crash in between, and by one batch at most.
CREATE TABLE IF NOT EXISTS trade_lanes (
    lane      smallint PRIMARY KEY,
    last_seq  bigint NOT NULL
);
