"""vectorbt's side of the agreement test `backtest::the_units_model_agrees_with_vectorbt`.

Reads the prices and the cases the Rust test wrote, runs each case through
`vectorbt.Portfolio.from_signals` and prints one JSON object per case: total return, max
drawdown (positive), trade count and per-trade returns, in the order vectorbt lists them.

A case's target positions (one per bar, decided at that bar's close) become vectorbt's
signals the way Gauntlet trades them:
  * next-close: a change of target at bar t trades at bar t's close (price = close); a change
    decided at the last bar is not traded (Gauntlet has no bar left to hold it over);
  * next-open: the change decided at bar t trades at bar t + 1's open (price = open, the
    signal moved one bar later).
Usage: python3 vectorbt_agreement.py DIR  (DIR holds prices.csv and cases.json)
"""

import json
import sys

import numpy as np
import pandas as pd
import vectorbt as vbt


def signals(targets, fill):
    n = len(targets)
    le, lx, se, sx = (np.zeros(n, dtype=bool) for _ in range(4))
    prev = 0.0
    for t in range(n - 1):
        x = targets[t]
        if x != prev:
            at = t if fill == "next-close" else t + 1
            if x > 0:
                le[at] = True
            elif x < 0:
                se[at] = True
            elif prev > 0:
                lx[at] = True
            else:
                sx[at] = True
        prev = x
    return le, lx, se, sx


def main():
    folder = sys.argv[1]
    prices = pd.read_csv(f"{folder}/prices.csv")
    with open(f"{folder}/cases.json") as f:
        cases = json.load(f)
    index = pd.RangeIndex(len(prices))
    close = pd.Series(prices["close"].to_numpy(), index=index)
    open_ = pd.Series(prices["open"].to_numpy(), index=index)
    out = []
    for case in cases:
        le, lx, se, sx = signals(case["targets"], case["fill"])
        if case["direction"] == "both":
            # Short signals make the direction both.
            side = dict(
                short_entries=pd.Series(se, index=index),
                short_exits=pd.Series(sx, index=index),
            )
        else:
            side = dict(direction="longonly")
        pf = vbt.Portfolio.from_signals(
            close,
            entries=pd.Series(le, index=index),
            exits=pd.Series(lx, index=index),
            **side,
            price=close if case["fill"] == "next-close" else open_,
            fees=case["fees"],
            slippage=case["slippage"],
            init_cash=1.0,
            size=np.inf,
            freq="1D",
        )
        trades = pf.trades.records_readable
        out.append(
            {
                "name": case["name"],
                "total_return": float(pf.total_return()),
                "max_drawdown": -float(pf.max_drawdown()),
                "trades": int(pf.trades.count()),
                "trade_returns": [float(r) for r in pf.trades.returns.values],
                "directions": [str(d) for d in trades["Direction"]],
            }
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
