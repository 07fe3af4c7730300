#!/usr/bin/env python3
"""Score fraudstream's output on the Fraud Detection Handbook's test protocol.

The handbook (chapter 3.3) trains on one week, waits a 7-day delay and tests
on the week after; a customer with a known fraud (in the training week, or
in the delay period up to the day before) is left out of the test days,
since their card would be blocked. fraudstream learns online from the
labels of `topologies/handbook.toml` (each released 7 days after its
transaction), so it is scored here on the same test days, with the same
exclusions, from its own scores file. Reports ROC AUC, average precision,
card precision@100 (per day: the share of the 100 highest-scored customers
that had a fraud that day, then the mean over days) and the average
precision of each scenario (its frauds against every genuine transaction).

    python3 simulators/handbook/evaluate.py data/handbook/transactions.csv out/handbook/scores.jsonl

Needs numpy, pandas and scikit-learn.
"""
import argparse
import json
import sys

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("transactions", help="the CSV generate.py wrote")
    ap.add_argument("scores", help="fraudstream's scores sink (JSONL)")
    ap.add_argument("--test-day", type=int, default=129,
                    help="first test day (the handbook's 2018-08-08: training from day 115)")
    ap.add_argument("--k", type=int, default=100)
    a = ap.parse_args()

    tx = pd.read_csv(a.transactions, usecols=["TRANSACTION_ID", "CUSTOMER_ID", "TX_TIME_DAYS",
                                              "TX_FRAUD", "TX_FRAUD_SCENARIO"])
    scores = {}
    with open(a.scores) as f:
        for line in f:
            r = json.loads(line)
            scores[int(r["tx_id"])] = r["score"]
    tx["score"] = tx.TRANSACTION_ID.map(scores)
    missing = int(tx.score.isna().sum())
    if missing:
        sys.exit(f"evaluate.py: {missing} transactions have no score in {a.scores}")

    train = a.test_day - 14
    known = set(tx[(tx.TX_TIME_DAYS >= train) & (tx.TX_TIME_DAYS < train + 7) & (tx.TX_FRAUD == 1)].CUSTOMER_ID)
    days = []
    for d in range(7):
        delay_day = tx[tx.TX_TIME_DAYS == train + 7 + d - 1]
        known |= set(delay_day[delay_day.TX_FRAUD == 1].CUSTOMER_ID)
        test = tx[tx.TX_TIME_DAYS == a.test_day + d]
        days.append(test[~test.CUSTOMER_ID.isin(known)])
    t = pd.concat(days)
    if t.TX_FRAUD.nunique() < 2:
        sys.exit("evaluate.py: the test days hold one class only")

    cards = []
    for _, g in t.groupby("TX_TIME_DAYS"):
        per = g.groupby("CUSTOMER_ID").agg(s=("score", "max"), f=("TX_FRAUD", "max"))
        cards.append(per.sort_values("s", ascending=False).f.head(a.k).mean())
    print(f"test days {a.test_day}-{a.test_day + 6}: {len(t)} transactions, {int(t.TX_FRAUD.sum())} frauds")
    print(f"ROC AUC {roc_auc_score(t.TX_FRAUD, t.score):.4f}  "
          f"average precision {average_precision_score(t.TX_FRAUD, t.score):.4f}  "
          f"card precision@{a.k} {np.mean(cards):.4f}")
    for sc, name in [(1, "amount above 220"), (2, "compromised terminals"), (3, "compromised customers")]:
        m = (t.TX_FRAUD_SCENARIO == sc) | (t.TX_FRAUD == 0)
        n = int((t.TX_FRAUD_SCENARIO == sc).sum())
        ap_sc = average_precision_score(t[m].TX_FRAUD, t[m].score) if n else float("nan")
        print(f"  scenario {sc} ({name}): {n} frauds, average precision {ap_sc:.4f}")


if __name__ == "__main__":
    main()
