// The page's trading panels: log in for an API key of the gateway's REST API, sign requests
// with WebCrypto, place and cancel orders, and keep open orders, fills and balances live from
// the private stream (a snapshot, then events; on close, a fresh signed URL and a new snapshot).
// Prices, sizes and balances stay the API's decimal strings: shown as sent, never as floats.

import { amountProblem, rulesOf } from "/amounts.js";

const $ = (id) => document.getElementById(id);
const STORE = "ringex.session"; // sessionStorage: {apiKey, secretKey, accountId, username}
const RECV_WINDOW_MS = 5000, FILLS = 100, STREAM_PATH = "/api/v1/stream";
const BAD_CREDENTIALS = -2014; // the API's code for an unknown API key
const OUTSIDE_WINDOW = -1021; // the API's code for a timestamp outside the receive window
// An order is open (listed, cancellable) in these; a stop waiting for its trigger is one,
// though not on the book (isWorking false).
const OPEN = new Set(["PENDING_NEW", "NEW", "PARTIALLY_FILLED"]);
const enc = new TextEncoder();

// What each order type takes: its price field's role and its time-in-force choices.
const TYPES = {
  LIMIT: { price: "price", stop: false, tifs: ["GTC", "IOC", "FOK"] },
  MARKET: { price: "worst price (optional)", stop: false, tifs: ["IOC", "FOK"] },
  STOP_LOSS: { price: "worst price (optional)", stop: true, tifs: ["IOC", "FOK"] },
  STOP_LOSS_LIMIT: { price: "price", stop: true, tifs: ["GTC", "IOC", "FOK"] },
  LIMIT_MAKER: { price: "price", stop: false, tifs: ["GTC"] },
};

let rest = null; // the REST API's base URL, from /api/config
let session = null; // the logged-in API key, or null
let hmacKey = null; // session.secretKey, imported for crypto.subtle
let clockOffset = 0; // server clock - Date.now(), ms: timestamps must fall in its window
let stream = null, streamSeq = 0, retryTimer = null, retryDelay = 1000;
let streamHeard = 0; // when the private stream last said anything (a heartbeat, every 5 s)
let haveHistory = true; // GET myTrades answers (it needs the database: 503 without one)
let exchangeInfo = null; // GET exchangeInfo's answer (a promise of it): each tick and lot
// Bumped by every login and logout: an answer that comes back to an older session is dropped.
let sessionEpoch = 0;
const orders = new Map(); // orderId -> the order as the API last showed it (open only)
// The orders whose cancel is on its way: a redraw meanwhile (any order's report) draws their
// button disabled, not a new live one that sent a second DELETE (review 149).
const cancelling = new Set();
const balances = new Map(); // asset -> {asset, free, locked}
const fills = new Map(); // "symbol/tradeId/maker" -> fill, from the stream and myTrades

// -- the REST API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.msg ? `${body.msg} (code ${body.code})` : `HTTP ${status}`);
    this.status = status;
    this.code = body ? body.code : null;
  }
}

function now() {
  return Math.round(Date.now() + clockOffset);
}

async function signature(timestamp, method, path, query, body, key = hmacKey) {
  const payload = `${timestamp}\n${RECV_WINDOW_MS}\n${method}\n${path}\n${query}\n${body}`;
  const mac = await crypto.subtle.sign("HMAC", key, enc.encode(payload));
  return [...new Uint8Array(mac)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// One request: POST sends its parameters as a form body, the other methods in the query
// string, exactly as they are signed, with `creds` ({apiKey, key}: the session's unless
// given). Resolves to the decoded answer; ApiError otherwise. A signed request refused for
// its timestamp (-1021: the computer's clock moved since it was measured, NTP after a
// resume say) is sent once more with the clock measured again: it was refused unread.
async function api(method, path, params = {}, signed = true, creds = null, again = true) {
  const text = new URLSearchParams(params).toString();
  const [query, body] = method === "POST" ? ["", text] : [text, ""];
  const headers = {};
  if (body) headers["Content-Type"] = "application/x-www-form-urlencoded";
  if (signed) {
    const { apiKey, key } = creds || { apiKey: session.apiKey, key: hmacKey };
    const timestamp = now();
    headers["X-RINGEX-APIKEY"] = apiKey;
    headers["X-RINGEX-TIMESTAMP"] = String(timestamp);
    headers["X-RINGEX-RECV-WINDOW"] = String(RECV_WINDOW_MS);
    headers["X-RINGEX-SIGNATURE"] = await signature(timestamp, method, path, query, body, key);
  }
  let reply;
  try {
    reply = await fetch(rest + path + (query ? `?${query}` : ""), {
      method, headers, body: body || undefined,
    });
  } catch (err) {
    // an order or a cancel may have reached the exchange before the connection broke (its
    // gateway restarted): not known, so not said to be lost; the live lists will show it
    if (method === "GET" || path === "/api/v1/apiKey") {
      throw new Error(`the REST API at ${rest} is unreachable (${err.message})`);
    }
    throw new Error(`no answer from the REST API at ${rest} (${err.message}): it may have `
      + "been carried out; the open orders, fills and balances show what was");
  }
  const data = await reply.json().catch(() => null);
  if (!reply.ok) {
    const err = new ApiError(reply.status, data);
    if (!(signed && again && err.code === OUTSIDE_WINDOW)) throw err;
    await syncClock();
    return api(method, path, params, signed, creds, false);
  }
  return data;
}

async function syncClock() {
  const sent = Date.now();
  const { serverTime } = await api("GET", "/api/v1/time", {}, false);
  clockOffset = serverTime - Math.round((sent + Date.now()) / 2);
}

// -- log in and out -------------------------------------------------------------------------

function say(el, message, ok) {
  el.textContent = message;
  el.className = ok === undefined ? "msg" : ok ? "msg ok" : "msg error";
}

async function login(ev) {
  ev.preventDefault();
  if ($("login-button").disabled) return; // one login at a time: a second would leave a key
  const username = $("login-user").value.trim(), password = $("login-password").value;
  say($("login-msg"), "logging in...");
  $("login-button").disabled = true;
  sessionEpoch++;
  try {
    const key = await api("POST", "/api/v1/apiKey",
      { username, password, scopes: "read,trade", label: "web page" }, false);
    session = {
      apiKey: key.apiKey, secretKey: key.secretKey,
      accountId: key.accountId, username: key.username,
    };
    sessionStorage.setItem(STORE, JSON.stringify(session));
    $("login-password").value = "";
    say($("login-msg"), "");
    await begin();
  } catch (err) {
    say($("login-msg"), err.message, false);
  } finally {
    $("login-button").disabled = false;
  }
}

async function begin() {
  hmacKey = await crypto.subtle.importKey("raw", enc.encode(session.secretKey),
    { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  $("who").textContent = `${session.username} (account ${session.accountId})`;
  $("login").hidden = true;
  $("account").hidden = false;
  $("order-fields").disabled = false;
  try {
    await syncClock();
  } catch (err) {
    console.warn("no server time, signing with the local clock:", err.message);
  }
  openStream();
}

// Forget the key at once, its stream closed, and revoke it (so that logins do not pile up
// keys on the server) after: an API that does not answer does not keep the page logged in.
async function logout() {
  const creds = session && hmacKey && { apiKey: session.apiKey, key: hmacKey };
  end();
  if (creds) {
    try {
      await api("DELETE", "/api/v1/apiKey", {}, true, creds);
    } catch (err) {
      console.warn("revoking the API key:", err.message);
    }
  }
}

function end(message = "") {
  session = hmacKey = null;
  sessionEpoch++;
  haveHistory = true; // a next session asks again (the database may be back)
  sessionStorage.removeItem(STORE);
  clearTimeout(retryTimer);
  if (stream) {
    const ws = stream;
    stream = null;
    ws.close();
  }
  orders.clear();
  cancelling.clear();
  balances.clear();
  fills.clear();
  say($("order-result"), ""); // the last session's answer is not the next one's
  drawOrders();
  drawBalances();
  drawFills();
  setStreamStatus("");
  say($("stream-msg"), "");
  $("account").hidden = true;
  $("login").hidden = false;
  $("order-fields").disabled = true;
  say($("order-result"), "");
  say($("login-msg"), message, message ? false : undefined);
}

// -- the private stream ---------------------------------------------------------------------

async function openStream() {
  clearTimeout(retryTimer);
  if (!session) return;
  const timestamp = now();
  const params = new URLSearchParams({
    apiKey: session.apiKey,
    timestamp,
    recvWindow: RECV_WINDOW_MS,
    signature: await signature(timestamp, "GET", STREAM_PATH, "", ""),
    closeOnRefusal: "true", // a refusal as a close with its reason: a browser reads no 429
  });
  if (!session) return; // logged out meanwhile
  if (stream) { // one stream a page: the one before goes (its messages are ignored)
    const old = stream;
    stream = null;
    old.close();
  }
  const ws = new WebSocket(`${rest.replace(/^http/, "ws")}${STREAM_PATH}?${params}`);
  stream = ws;
  streamSeq = 0;
  streamHeard = Date.now();
  setStreamStatus("connecting");
  ws.onopen = () => { if (ws === stream) streamHeard = Date.now(); }; // a slow handshake
  ws.onmessage = (ev) => {
    if (ws !== stream) return;
    streamHeard = Date.now();
    onPrivate(ws, JSON.parse(ev.data));
  };
  ws.onclose = (ev) => {
    if (ws !== stream) return; // replaced or logged out
    stream = null;
    setStreamStatus("disconnected");
    // the gateway's reason (a stream limit, a refused signature, too far behind), if any
    if (ev.reason) say($("stream-msg"), `stream closed: ${ev.reason}`, false);
    else say($("stream-msg"), "");
    retryTimer = setTimeout(reconnect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  };
}

// Before reconnecting, ask whether the key still exists: a revoked key means log in again.
async function reconnect() {
  if (!session) return;
  try {
    await syncClock(); // the stream's URL is signed: with the clock as it is now
    await api("GET", "/api/v1/account");
  } catch (err) {
    if (err.status === 401 && err.code === BAD_CREDENTIALS) {
      end(`logged out: ${err.message}`);
      return;
    }
  }
  openStream();
}

// Heartbeats stopped (three missed): a half-open stream, which may take long to report its
// close: dropped now, and another opened from a fresh snapshot (review 58).
setInterval(() => {
  if (stream && stream.readyState === WebSocket.OPEN && Date.now() - streamHeard > 15000) {
    const stale = stream;
    stream = null;
    stale.close();
    setStreamStatus("disconnected");
    retryTimer = setTimeout(reconnect, 0);
  }
}, 5000);

function onPrivate(ws, msg) {
  if (msg.event === "heartbeat") return; // no seq: it says only that the stream is alive
  if (msg.seq !== streamSeq + 1) { // a message lost: start over from a snapshot
    console.warn(`private stream: seq ${msg.seq} after ${streamSeq}, reconnecting`);
    ws.close();
    return;
  }
  streamSeq = msg.seq;
  const d = msg.data;
  switch (msg.event) {
    case "snapshot":
      orders.clear();
      d.openOrders.forEach((o) => orders.set(o.orderId, o));
      balances.clear();
      d.balances.forEach((b) => balances.set(b.asset, b));
      drawOrders();
      drawBalances();
      setStreamStatus("live");
      say($("stream-msg"), "");
      retryDelay = 1000;
      loadFills();
      break;
    case "executionReport":
      if (OPEN.has(d.status)) orders.set(d.orderId, d); else orders.delete(d.orderId);
      drawOrders();
      if (d.executionType === "TRADE") {
        addFill({
          symbol: d.symbol, tradeId: d.tradeId, maker: d.isMaker, side: d.side,
          price: d.lastPrice, qty: d.lastQty, time: d.eventTime, orderId: d.orderId,
          commission: d.commission, commissionAsset: d.commissionAsset,
        });
        drawFills();
      }
      break;
    case "balance":
      balances.set(d.asset, d);
      drawBalances();
      break;
  }
}

function setStreamStatus(state) {
  const el = $("stream-status");
  el.textContent = state;
  el.className = state === "live" ? "up" : "down";
}

// Fills from before this page (or a reconnect) come from the history, where there is one.
async function loadFills() {
  if (!haveHistory) return;
  const epoch = sessionEpoch;
  // app.js's symbol list itself, not the picker's options (it may not be filled yet)
  for (const name of (await symbolList).map((s) => s.symbol)) {
    if (epoch !== sessionEpoch) return;
    try {
      const trades = await api("GET", "/api/v1/myTrades", { symbol: name, limit: FILLS });
      if (epoch !== sessionEpoch) return; // logged out (or in again) meanwhile: not ours
      trades.forEach((t) => addFill({
        symbol: t.symbol, tradeId: t.id, maker: t.isMaker, side: t.isBuyer ? "BUY" : "SELL",
        price: t.price, qty: t.qty, time: t.time, orderId: t.orderId,
        commission: t.commission, commissionAsset: t.commissionAsset,
      }));
    } catch (err) {
      // no database behind this gateway: not asked again this session (one that did not
      // answer in time is asked again at the next snapshot)
      if (err.status === 503 && /not enabled/.test(err.message)) haveHistory = false;
      else console.warn("fills history:", err.message);
      return;
    }
  }
  drawFills();
}

function fillKey(f) {
  return `${f.symbol}/${f.tradeId}/${f.maker}`; // a self-trade is two fills of one trade
}

function addFill(f) {
  fills.set(fillKey(f), f);
}

// -- orders ---------------------------------------------------------------------------------

function onTypeChange() {
  const form = $("order-form").elements;
  const spec = TYPES[form.type.value];
  const tif = form.timeInForce, current = tif.value;
  tif.replaceChildren(...spec.tifs.map((t) => new Option(t)));
  tif.value = spec.tifs.includes(current) ? current : spec.tifs[0];
  tif.disabled = spec.tifs.length === 1;
  form.price.placeholder = spec.price;
  form.stopPrice.disabled = !spec.stop;
  form.stopPrice.placeholder = spec.stop ? "stop price" : "-";
}

function onSideChange() {
  const side = $("order-form").elements.side.value;
  $("order-submit").textContent = `${side.toLowerCase()} ${currentSymbol()}`;
  $("order-submit").className = side === "BUY" ? "buy" : "sell";
}

function currentSymbol() {
  const picked = $("symbol").selectedOptions[0];
  return picked ? picked.text : "";
}

async function placeOrder(ev) {
  ev.preventDefault();
  const button = $("order-submit");
  if (button.disabled) return; // one order at a time: a double click sends it once
  button.disabled = true; // from here on, the rules' read included (review 60)
  try {
    await sendOrder();
  } finally {
    button.disabled = false;
  }
}

async function sendOrder() {
  const form = $("order-form").elements;
  const params = { symbol: currentSymbol(), side: form.side.value, type: form.type.value };
  for (const name of ["timeInForce", "price", "stopPrice", "quantity"]) {
    const value = form[name].disabled ? "" : form[name].value.trim();
    if (value) params[name] = value;
  }
  const epoch = sessionEpoch;
  const problem = amountProblem(params, (await symbolRules()).get(params.symbol));
  if (epoch !== sessionEpoch) return; // logged out (or in again) meanwhile
  if (problem) { // refused here, as the API would: nothing is sent
    say($("order-result"), problem, false);
    return;
  }
  say($("order-result"), "sending...");
  try {
    const o = await api("POST", "/api/v1/order", params);
    if (epoch !== sessionEpoch) return; // logged out (or in again) meanwhile: not shown
    const at = o.fills.length ? ` at ${[...new Set(o.fills.map((f) => f.price))].join(", ")}` : "";
    say($("order-result"),
      `#${o.orderId} ${o.side} ${o.type} ${o.status}: filled ${o.executedQty} of ${o.origQty}${at}`,
      true);
  } catch (err) {
    if (epoch === sessionEpoch) say($("order-result"), err.message, false);
  }
}

// Each symbol's tick and lot: exchangeInfo's, asked once (again after a failure); without
// it one unit of the symbol list's decimals.
async function symbolRules() {
  exchangeInfo ??= api("GET", "/api/v1/exchangeInfo", {}, false).catch((err) => {
    console.warn("exchangeInfo:", err.message);
    exchangeInfo = null;
    return null;
  });
  return rulesOf(await exchangeInfo, await symbolList);
}

async function cancelOrder(order, button) {
  if (cancelling.has(order.orderId)) return;
  button.disabled = true;
  cancelling.add(order.orderId);
  const epoch = sessionEpoch;
  try {
    const done = await api("DELETE", "/api/v1/order",
      { symbol: order.symbol, orderId: order.orderId });
    if (epoch !== sessionEpoch) return;
    cancelling.delete(order.orderId);
    orders.delete(done.orderId); // final: no later event brings it back
    drawOrders();
    say($("order-result"), `#${done.orderId} ${done.status}`, true);
  } catch (err) {
    if (epoch !== sessionEpoch) return;
    cancelling.delete(order.orderId);
    say($("order-result"), err.message, false);
    drawOrders(); // its button live again (this one may have been redrawn meanwhile)
  }
}

// Every open order of the account, on every symbol, in one request (DELETE openOrders).
async function cancelAll(button) {
  button.disabled = true;
  const epoch = sessionEpoch;
  try {
    const ended = await api("DELETE", "/api/v1/openOrders");
    if (epoch !== sessionEpoch) return;
    for (const o of ended) if (!OPEN.has(o.status)) orders.delete(o.orderId);
    drawOrders();
    // each listed order as it ended: cancelled, filled first, or (not seen to end) still open
    const count = (test) => ended.filter(test).length;
    const cancelled = count((o) => o.status === "CANCELED");
    const parts = [`${cancelled} open order${cancelled === 1 ? "" : "s"} cancelled`];
    const filled = count((o) => o.status === "FILLED"), open = count((o) => OPEN.has(o.status));
    if (filled) parts.push(`${filled} filled first`);
    if (open) parts.push(`${open} still open`);
    say($("order-result"), parts.join(", "), true);
  } catch (err) {
    if (epoch === sessionEpoch) say($("order-result"), err.message, false);
  } finally {
    button.disabled = false;
  }
}

// -- the tables -----------------------------------------------------------------------------

const ZERO = /^0*(\.0*)?$/;

function cells(row, values) {
  for (const v of values) row.insertCell().textContent = v;
}

// A fill's commission and its asset ("-": not known, as for a trade filed before fees were
// kept, whose myTrades commission is null).
function fee(f) {
  return f.commission == null ? "-" : `${f.commission} ${f.commissionAsset}`;
}

function clock(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "-";
}

function drawOrders() {
  const body = $("open-orders").tBodies[0];
  body.replaceChildren();
  for (const id of [...orders.keys()].sort((a, b) => b - a)) {
    const o = orders.get(id);
    const row = body.insertRow();
    row.dataset.orderId = o.orderId;
    cells(row, [
      clock(o.time), o.symbol, o.side, o.type || "-", ZERO.test(o.price) ? "-" : o.price,
      ZERO.test(o.stopPrice) ? "-" : o.stopPrice, o.origQty, o.executedQty, o.status,
    ]);
    row.cells[2].className = o.side === "BUY" ? "buy" : "sell";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "cancel";
    button.textContent = "cancel";
    button.onclick = () => cancelOrder(o, button);
    button.disabled = cancelling.has(o.orderId);
    row.insertCell().append(button);
  }
  $("orders-count").textContent = orders.size ? String(orders.size) : "";
  $("cancel-all").hidden = !orders.size;
}

function drawFills() {
  const body = $("fills").tBodies[0];
  body.replaceChildren();
  const newest = [...fills.values()].sort((a, b) => b.time - a.time || b.tradeId - a.tradeId);
  newest.slice(FILLS).forEach((f) => fills.delete(fillKey(f)));
  for (const f of newest.slice(0, FILLS)) {
    const row = body.insertRow();
    row.dataset.tradeId = f.tradeId;
    row.dataset.orderId = f.orderId;
    cells(row, [
      clock(f.time), f.symbol, f.side, f.price, f.qty, f.maker ? "maker" : "taker", fee(f),
    ]);
    row.cells[2].className = f.side === "BUY" ? "buy" : "sell";
  }
}

function drawBalances() {
  const body = $("balances").tBodies[0];
  body.replaceChildren();
  for (const asset of [...balances.keys()].sort()) {
    const b = balances.get(asset);
    const row = body.insertRow();
    row.dataset.asset = asset;
    cells(row, [asset, b.free, b.locked]);
  }
}

// -- start ----------------------------------------------------------------------------------

async function start() {
  const config = await fetch("/api/config").then((r) => r.json());
  if (!config.rest) return; // no gateway serves a REST API: no trading panels
  const host = config.rest.host ?? location.hostname;
  const scheme = location.protocol === "https:" ? "https" : "http";
  rest = `${scheme}://${host.includes(":") ? `[${host}]` : host}:${config.rest.port}`;
  $("trading").hidden = false;
  symbolRules(); // asked now: the first order need not wait for it
  $("login").onsubmit = login;
  $("logout").onclick = logout;
  $("cancel-all").onclick = (ev) => cancelAll(ev.currentTarget);
  $("order-form").onsubmit = placeOrder;
  $("order-form").elements.type.onchange = onTypeChange;
  $("order-form").elements.side.onchange = onSideChange;
  $("symbol").addEventListener("change", onSideChange);
  for (const id of ["asks", "bids"]) { // a click on a level takes its price
    $(id).addEventListener("click", (ev) => {
      const row = ev.target.closest("tr");
      if (row) $("order-form").elements.price.value = row.cells[0].textContent;
    });
  }
  onTypeChange();
  onSideChange();
  if (!window.isSecureContext || !crypto.subtle) {
    say($("login-msg"), "signing needs a secure context (https, or localhost)", false);
    $("login-button").disabled = true;
    return;
  }
  const saved = sessionStorage.getItem(STORE);
  if (saved) {
    session = JSON.parse(saved);
    await begin();
  }
}

// The picker's options come from app.js's /api/symbols: wait for them before naming a symbol.
new MutationObserver(onSideChange).observe($("symbol"), { childList: true });
start();
