-- An iceberg order's shown slice (NewOrder.display_qty, lots), so the history shows its
-- icebergQty as the live views do. Rows written before are 0 (not known).
ALTER TABLE orders ADD COLUMN display bigint NOT NULL DEFAULT 0;
