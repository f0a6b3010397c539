-- The client's order id (NewOrder.client_id: the REST API's clientOrderId, or a FIX ClOrdID
-- of at most 36 printable ASCII characters), so allOrders shows it and GET order finds an
-- order by it once the gateway has forgotten the order. Rows written before, and orders
-- whose id was not kept (a longer ClOrdID), have ''. A constant default: no table rewrite.
ALTER TABLE orders ADD COLUMN client_order_id text NOT NULL DEFAULT '';
-- A query by origClientOrderId asks for the account's newest order of that id (an id is
-- unique among an account's open orders only, as at the venues whose API this follows).
CREATE INDEX IF NOT EXISTS orders_client_id ON orders (account_id, client_order_id, id)
    WHERE client_order_id <> '';
