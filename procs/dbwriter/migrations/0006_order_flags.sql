-- An order's flags (NewOrder.flags: 1 = post-only), so the history tells a LIMIT_MAKER order
-- from a plain LIMIT one as the live views do. Rows written before are 0 (no flag known).
ALTER TABLE orders ADD COLUMN flags int2 NOT NULL DEFAULT 0;
