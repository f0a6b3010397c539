"""Review 60, a reread of the page's fixes of review 58 (a22049a), in headless Chromium on a
whole exchange (``test_review58_page.py``'s module-scoped ``exchange``, one of its own here).
Each test pins one fault the fixes left; it failed on the code it was written against and
passes since its fix (the same session's commits).
"""

from __future__ import annotations

import asyncio

from .chromium import needs_chromium
from .test_review58_page import (
    BID,
    Exchange,
    client,
    evaluate,
    exchange,
    log_in,
    opened,
    run,
    slow_network,
)
from .test_trading_page import act

pytestmark = needs_chromium

__all__ = ["exchange"]  # the fixture, imported for this module (an exchange of its own)

#: The page's first GET exchangeInfo fails (the REST API restarting as the page loaded, a
#: proxy's hiccup): ``symbolRules`` forgets it and asks again at the next order.
FIRST_RULES_FAIL = """(() => {
  const real = window.fetch.bind(window);
  let failed = false;
  window.orderPosts = 0; // POST /api/v1/order sent, counted here
  window.fetch = (url, init, ...rest) => {
    if (String(url).endsWith("/api/v1/order") && init && init.method === "POST") {
      window.orderPosts++;
    }
    if (!failed && String(url).includes("/api/v1/exchangeInfo")) {
      failed = true;
      return Promise.reject(new TypeError("Failed to fetch"));
    }
    return real(url, init, ...rest);
  };
})()"""


def test_a_double_click_sends_one_order_while_the_rules_are_asked_again(
    exchange: Exchange,
) -> None:
    """What should happen: a double click on "buy" places one order, whatever the page is
    waiting for (a58's fix: "one order at a time: a double click sends it once").

    What happens: where the page's exchangeInfo is not in hand (its first ask failed, so
    ``symbolRules`` set ``exchangeInfo`` back to null and asks again at the next order), the
    first click's ``placeOrder`` awaits ``symbolRules()`` -- a request over the network --
    before it sets ``button.disabled = true``; the second click, 0.1 s later, finds the
    button enabled and awaits the same promise, and both POST /api/v1/order. Both resume in
    one microtask run, so they are mostly signed with the same ms and the gateway refuses
    the second as replayed (-1025): the page then shows "request replayed: this signature
    was accepted already" over the first's "#n BUY LIMIT NEW", and the trader, told the
    order failed, sends it again (where the two straddle a ms, both are placed).

    Cause: ``placeOrder`` in ``procs/marketdata/static/trading.js`` checks and sets its
    guard on either side of ``await symbolRules()`` (``amountProblem``'s rules), so the guard
    holds only when that await happens to finish within one task.

    Fix: set ``button.disabled = true`` (or a ``sending`` flag) right after the check, before
    any await, and clear it in a ``finally`` that covers the rules' read and
    ``amountProblem``'s refusal too.
    """

    async def body() -> None:
        async with opened(exchange, "rules", before=FIRST_RULES_FAIL) as page:
            await log_in(page, "DOUBLE")
            await slow_network(page)
            await act(page, BID, "#order-submit")
            await asyncio.sleep(0.1)
            await evaluate(page, 'document.getElementById("order-submit").click()')
            await page.wait_for("an answer", lambda s: "(code" in s["result"] or "#" in s["result"])
            await asyncio.sleep(1.5)  # the second's answer, if any, has come by now
            out = await page.call(
                "Runtime.evaluate", expression="window.orderPosts", returnByValue=True
            )
            state = await page.wait_for("the page", bool)
            async with await client(exchange, "DOUBLE") as api:
                mine = await api.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
            posts = out["result"]["value"]
            assert (posts, len(mine)) == (1, 1), f"{posts} sent, {mine} placed: {state['result']}"
            assert "NEW" in state["result"], f"the order's answer is not shown: {state['result']}"

    run(body())
