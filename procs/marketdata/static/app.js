// The market-data page: one WebSocket, SUBSCRIBE/UNSUBSCRIBE on symbol or interval change,
// an order book kept from a snapshot and contiguous diffs, candles drawn on a canvas.
"use strict";

const $ = (id) => document.getElementById(id);
const LEVELS = 15, TRADES = 50;
let ws = null, nextId = 1, symbol = null, interval = "1m", streams = [];
let book = null, candles = [], lastBeat = 0;
// Each symbol's price decimals (by stream name): the chart's axis prints prices at them.
const priceDecimals = new Map();
// A select is "loading" from its SUBSCRIBE until its history came: the symbol's messages are
// held meanwhile and replayed after it (trades already shown are skipped by id), so nothing
// that happened between the history and the subscription is missed. ``selecting`` counts
// selects: one overtaken by a newer one drops its answer.
let selecting = 0, held = null, shown = new Set();
// The exchange's symbols, asked until they come (one failure at load left the page dead for
// good: review 149), 0.5 s after a failure, then twice as long up to 10 s; trading.js waits on
// it too (global: a classic script).
const symbolList = (async () => {
  for (let wait = 500; ; wait = Math.min(2 * wait, 10000)) {
    try {
      const answer = await fetch("/api/symbols");
      if (answer.ok) return await answer.json();
    } catch (err) { /* the network's: asked again */ }
    await new Promise((ok) => setTimeout(ok, wait));
  }
})();

function streamsFor(sym, iv) {
  return [`${sym}@trade`, `${sym}@depth`, `${sym}@ticker`, `${sym}@kline_${iv}`, `${sym}@status`];
}

function send(method, params) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ method, params, id: nextId++ }));
  }
}

async function select(sym, iv) {
  const mine = ++selecting;
  const want = streamsFor(sym, iv);
  const sameSymbol = sym === symbol && streams.length > 0;  // an interval change
  // while this symbol's history still loads: what that select held (its book's snapshot,
  // the ticker, trades) is this one's too, and so is the tape it fetched (review 47)
  const loading = sameSymbol && held !== null;
  const drop = streams.filter((s) => !want.includes(s));
  const add = want.filter((s) => !streams.includes(s));
  if (drop.length) send("UNSUBSCRIBE", drop);
  symbol = sym; interval = iv; candles = []; streams = want;
  drawChart();  // empty while the history loads: not the last symbol's or interval's
  if (!sameSymbol) {  // a new tape, book and ticker: the streams start again
    book = null; shown = new Set();
    $("halt").hidden = true;  // the new symbol's status comes at its subscription
    $("trades").tBodies[0].innerHTML = "";
    clearTicker();  // a symbol that never traded sends no ticker: not the last one's
    clearBook();  // nor its book, whose level a click copies into the order form
  }
  if (!loading) held = [];
  if (add.length) send("SUBSCRIBE", add);  // first: what happens from now on is held
  let klines = [], trades = [];
  try {
    [klines, trades] = await Promise.all([
      getJson(`/api/klines?symbol=${sym}&interval=${iv}&limit=120`),
      sameSymbol && !loading ? [] : getJson(`/api/trades?symbol=${sym}&limit=${TRADES}`),
    ]);
  } catch (err) {  // no history: the stream alone, with what was held (its book's snapshot)
    console.warn(`history of ${sym}:`, err.message);
  }
  if (mine !== selecting) return;  // a newer select owns the page now
  candles = klines;
  trades.forEach(addTrade);
  const later = held; held = null;
  later.forEach(onMessage);
  drawChart();
}

async function getJson(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/ws`);
  ws.onopen = () => { setStatus(true); if (symbol) { streams = []; select(symbol, interval); } };
  ws.onclose = () => { setStatus(false); setTimeout(connect, 1000); };
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
}

function setStatus(up) {
  $("status").className = up ? "up" : "down";
  $("status").textContent = up ? "live" : "disconnected";
}

function onMessage(msg) {
  if (msg.error) { console.warn("server error", msg.error); return; }
  if (!msg.stream) return;
  const d = msg.data;
  if (msg.stream === "heartbeat") { lastBeat = Date.now(); setStatus(true); return; }
  if (!symbol || !msg.stream.startsWith(symbol + "@")) return;
  // a halt or resume owes nothing to the history: shown at once, not after a slow load
  if (d.e === "status") { $("halt").hidden = d.S !== "HALT"; return; }
  if (held) { held.push(msg); return; }  // its history is loading: after it
  switch (d.e) {
    case "trade": addTrade(d); break;
    case "depthSnapshot": onSnapshot(d); break;
    case "depthUpdate": onDiff(d); break;
    case "24hrTicker": onTicker(d); break;
    case "kline": if (d.k.i === interval) onKline(d.k); break;
  }
}

function addTrade(t) {
  if (shown.has(t.t)) return;  // in the history and on the stream both
  shown.add(t.t);
  if (shown.size > 4 * TRADES) shown = new Set([...shown].slice(-2 * TRADES));
  const body = $("trades").tBodies[0];
  const row = body.insertRow(0);
  row.className = t.m ? "sell" : "buy";
  row.dataset.tradeId = t.t;
  row.insertCell().textContent = t.p;
  row.insertCell().textContent = t.q;
  row.insertCell().textContent = new Date(t.T).toLocaleTimeString();
  while (body.rows.length > TRADES) body.deleteRow(-1);
}

function onSnapshot(s) {
  book = { id: s.lastUpdateId, bids: new Map(), asks: new Map() };
  s.bids.forEach(([p, q]) => book.bids.set(p, q));
  s.asks.forEach(([p, q]) => book.asks.set(p, q));
  drawBook();
}

function onDiff(d) {
  if (!book || d.u <= book.id) return;
  if (d.U !== book.id + 1) {  // a gap: start over from a fresh snapshot
    book = null;
    send("UNSUBSCRIBE", [`${symbol}@depth`]);
    send("SUBSCRIBE", [`${symbol}@depth`]);
    return;
  }
  for (const [side, levels] of [[book.bids, d.b], [book.asks, d.a]]) {
    for (const [p, q] of levels) { if (Number(q) === 0) side.delete(p); else side.set(p, q); }
  }
  book.id = d.u;
  drawBook();
}

// a - b of two decimal strings, exactly (BigInt on the digits, the longer scale kept): the
// book's prices are decimals, and floats would print 0.30000000000000004.
function subtract(a, b) {
  const scale = Math.max((a.split(".")[1] || "").length, (b.split(".")[1] || "").length);
  const units = (s) => {
    const [whole, frac = ""] = s.split(".");
    return BigInt(whole + frac.padEnd(scale, "0"));
  };
  let d = units(a) - units(b);
  const sign = d < 0n ? "-" : "";
  if (d < 0n) d = -d;
  const digits = d.toString().padStart(scale + 1, "0");
  return scale ? `${sign}${digits.slice(0, -scale)}.${digits.slice(-scale)}` : sign + digits;
}

// The order of two non-negative decimal strings, exactly: a double cannot tell apart prices
// of 12 decimals 1e-12 apart (100000.000000000001 and ...02 are one double).
function compareDecimal(a, b) {
  const [ai, af = ""] = a.split("."), [bi, bf = ""] = b.split(".");
  const x = ai.replace(/^0+/, ""), y = bi.replace(/^0+/, "");
  if (x.length !== y.length) return x.length - y.length;
  const n = Math.max(af.length, bf.length);
  const p = x + af.padEnd(n, "0"), q = y + bf.padEnd(n, "0");
  return p < q ? -1 : p > q ? 1 : 0;
}

function drawBook() {
  const fill = (table, rows) => {
    const body = table.tBodies[0];
    body.innerHTML = "";
    for (const [p, q] of rows) {
      const row = body.insertRow();
      row.insertCell().textContent = p;
      row.insertCell().textContent = q;
    }
  };
  const bids = [...book.bids].sort((a, b) => compareDecimal(b[0], a[0])).slice(0, LEVELS);
  const asks = [...book.asks].sort((a, b) => compareDecimal(a[0], b[0])).slice(0, LEVELS);
  fill($("asks"), asks.reverse());
  fill($("bids"), bids);
  const bestAsk = asks.length ? asks[asks.length - 1][0] : null;
  const bestBid = bids.length ? bids[0][0] : null;
  $("spread").textContent = bestAsk && bestBid ? `spread ${subtract(bestAsk, bestBid)}` : "-";
  $("book-id").textContent = `#${book.id}`;
}

function onTicker(t) {
  $("t-last").textContent = t.c;
  $("t-change").textContent = `${t.p} (${t.P}%)`;
  $("t-change").className = t.p.startsWith("-") ? "sell" : "buy";
  $("t-open").textContent = t.o;
  $("t-high").textContent = t.h;
  $("t-low").textContent = t.l;
  $("t-volume").textContent = t.v;
  $("t-quote").textContent = t.q;
}

function clearBook() {
  $("asks").tBodies[0].innerHTML = "";
  $("bids").tBodies[0].innerHTML = "";
  $("spread").textContent = "-";
  $("book-id").textContent = "";
}

function clearTicker() {
  for (const id of ["t-last", "t-change", "t-open", "t-high", "t-low", "t-volume", "t-quote"]) {
    $(id).textContent = "-";
  }
  $("t-change").className = "";
}

function onKline(k) {
  const last = candles[candles.length - 1];
  if (last && last.t === k.t) candles[candles.length - 1] = k;
  else if (!last || k.t > last.t) candles.push(k);
  if (candles.length > 120) candles.shift();
  drawChart();
}

function drawChart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.fillStyle = "#181e24"; g.fillRect(0, 0, w, h);
  if (!candles.length) return;
  const pad = 50, hi = Math.max(...candles.map((c) => Number(c.h)));
  const lo = Math.min(...candles.map((c) => Number(c.l)));
  const span = hi - lo || 1, step = (w - pad) / Math.max(candles.length, 30);
  const y = (v) => 10 + (h - 30) * (1 - (Number(v) - lo) / span);
  g.font = "11px sans-serif"; g.fillStyle = "#8b949e";
  for (let k = 0; k <= 4; k++) {
    const v = lo + (span * k) / 4;
    g.fillText(v.toFixed(priceDecimals.get(symbol) ?? 2), w - pad + 4, y(v) + 4);
  }
  candles.forEach((c, i) => {
    const x = i * step + step / 2, up = Number(c.c) >= Number(c.o);
    g.strokeStyle = g.fillStyle = up ? "#3fb950" : "#f85149";
    g.beginPath(); g.moveTo(x, y(c.h)); g.lineTo(x, y(c.l)); g.stroke();
    const top = y(Math.max(Number(c.o), Number(c.c))), bottom = y(Math.min(Number(c.o), Number(c.c)));
    g.fillRect(x - step * 0.35, top, step * 0.7, Math.max(1, bottom - top));
  });
}

async function start() {
  const symbols = await symbolList;
  const picker = $("symbol");
  for (const s of symbols) {
    picker.add(new Option(s.symbol, s.stream));
    priceDecimals.set(s.stream, s.priceDecimals);
  }
  picker.onchange = () => select(picker.value, interval);
  $("interval").onchange = () => select(symbol, $("interval").value);
  connect();
  await new Promise((ok) => { const t = setInterval(() => {
    if (ws.readyState === WebSocket.OPEN) { clearInterval(t); ok(); } }, 20); });
  await select(symbols[0].stream, interval);
  setInterval(() => {  // heartbeats stopped: a half-open connection; replace it
    if (lastBeat && Date.now() - lastBeat > 15000) {
      setStatus(false); lastBeat = 0;
      const stale = ws;  // a half-open socket may take long to report its close: drop it now
      stale.onclose = stale.onmessage = null;
      stale.close();
      connect();  // its onopen selects again
    }
  }, 5000);
  window.addEventListener("resize", drawChart);
}

start();
