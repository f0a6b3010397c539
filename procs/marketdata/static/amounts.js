// An order's price, stop price and quantity checked against its symbol's tick and lot before
// it is sent, in the gateway's words (procs/gateway/instruments.py): "price 100.005 is not a
// multiple of tick 0.01 (symbol=BTC-USD)". Decimal strings become BigInt units, never floats.

// `text` in units of 10**-decimals, or null: not a plain decimal, or finer than `decimals`.
export function toUnits(text, decimals) {
  const m = /^(\d*)(?:\.(\d*))?$/.exec(text);
  if (!m || !(m[1] || m[2])) return null;
  const frac = (m[2] || "").replace(/0+$/, "");
  if (frac.length > decimals) return null;
  return BigInt((m[1] || "0") + frac.padEnd(decimals, "0"));
}

// Each symbol's rules: {tick, step, priceDecimals, qtyDecimals}; from the REST API's
// exchangeInfo (tickSize, stepSize), else one unit of the market-data symbol list's decimals.
export function rulesOf(exchangeInfo, symbols) {
  const rules = new Map();
  const unit = (decimals) => (decimals ? `0.${"1".padStart(decimals, "0")}` : "1");
  for (const s of symbols) {
    rules.set(s.symbol, {
      tick: unit(s.priceDecimals), step: unit(s.qtyDecimals),
      priceDecimals: s.priceDecimals, qtyDecimals: s.qtyDecimals,
    });
  }
  for (const s of exchangeInfo ? exchangeInfo.symbols : []) {
    rules.set(s.symbol, {
      tick: s.tickSize, step: s.stepSize,
      priceDecimals: s.pricePrecision, qtyDecimals: s.quantityPrecision,
    });
  }
  return rules;
}

// Why an order's `params` do not fit its symbol's `rule`, or null when they do (or when the
// symbol's rules are not known: the API says then).
export function amountProblem(params, rule) {
  if (!rule) return null;
  const checks = [
    ["price", "price", "tick", rule.tick, rule.priceDecimals],
    ["stopPrice", "stop price", "tick", rule.tick, rule.priceDecimals],
    ["quantity", "quantity", "lot", rule.step, rule.qtyDecimals],
  ];
  for (const [name, label, what, step, decimals] of checks) {
    const text = params[name];
    if (text === undefined) continue;
    if (!/^(\d+\.?\d*|\.\d+)$/.test(text)) {
      return `${label} ${text} is not a decimal number (symbol=${params.symbol})`;
    }
    const units = toUnits(text, decimals), stepUnits = toUnits(step, decimals);
    if (units === null || (stepUnits && units % stepUnits !== 0n)) {
      return `${label} ${text} is not a multiple of ${what} ${step} (symbol=${params.symbol})`;
    }
  }
  return null;
}
