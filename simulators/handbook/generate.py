#!/usr/bin/env python3
"""The Fraud Detection Handbook's transaction simulator, as published.

Le Borgne, Siblini, Lebichot, Bontempi, "Reproducible Machine Learning for
Credit Card Fraud Detection - Practical Handbook" (2022), chapter 3.2
("Transaction data simulator"). A generator the fraudstream team did not
write, kept beside ours so that the engine is measured on traffic whose
mechanisms its features were not written for:

- customers and terminals on a 100 x 100 grid; a customer pays at the
  terminals within radius 5 of home, Poisson(U(0, 4)) times a day, at
  N(noon, 20,000 s), amounts N(m, m/2) with m ~ U(5, 100);
- three fraud scenarios: (1) every amount above 220; (2) two terminals a day
  compromised: all their transactions for the next 28 days; (3) three
  customers a day compromised: a third of their transactions over the next
  14 days, at 5 times the amount.

With the defaults and --seed 0 this is the handbook's own dataset
(1,754,155 transactions, 14,681 frauds): the same random draws in the same
order. Other seeds shift every draw. Needs numpy and pandas.

    python3 simulators/handbook/generate.py --out data/handbook/transactions.csv
"""
import argparse
import os
import random
import sys

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="CSV file to write")
    ap.add_argument("--seed", type=int, default=0, help="0 = the handbook's own draws")
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--terminals", type=int, default=10000)
    ap.add_argument("--days", type=int, default=183)
    ap.add_argument("--radius", type=float, default=5.0)
    ap.add_argument("--start", default="2018-04-01", help="first day (UTC)")
    a = ap.parse_args()
    if a.customers < 1 or a.terminals < 2 or a.days < 2 or a.radius <= 0:
        sys.exit("generate.py: --customers >= 1, --terminals >= 2, --days >= 2 and --radius > 0")
    # Seed 0 gives the handbook's seeds; another seed offsets every one.
    off, day_off = 1_000_003 * a.seed, 7_919 * a.seed

    rng = np.random.RandomState(a.seed)
    cust = []
    for c in range(a.customers):
        x, y = rng.uniform(0, 100), rng.uniform(0, 100)
        m = rng.uniform(5, 100)
        cust.append((c, x, y, m, m / 2, rng.uniform(0, 4)))
    rng = np.random.RandomState(a.seed)
    term = np.array([(rng.uniform(0, 100), rng.uniform(0, 100)) for _ in range(a.terminals)])

    rows = []
    for c, x, y, mean, std, rate in cust:
        near = list(np.where(np.sqrt(((term - (x, y)) ** 2).sum(axis=1)) < a.radius)[0])
        random.seed(c + off)
        np.random.seed(c + off)
        for day in range(a.days):
            for _ in range(np.random.poisson(rate)):
                t = int(np.random.normal(86400 / 2, 20000))
                if 0 < t < 86400:
                    amount = np.random.normal(mean, std)
                    if amount < 0:
                        amount = np.random.uniform(0, mean * 2)
                    if near:
                        rows.append((t + day * 86400, day, c, random.choice(near), np.round(amount, 2)))
        if c % 500 == 499:
            print(f"  customers {c + 1}/{a.customers}", file=sys.stderr)

    tx = pd.DataFrame(rows, columns=["TX_TIME_SECONDS", "TX_TIME_DAYS", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"])
    tx = tx.sort_values("TX_TIME_SECONDS").reset_index(drop=True)
    tx["TRANSACTION_ID"] = tx.index
    tx["TX_DATETIME"] = pd.to_datetime(tx.TX_TIME_SECONDS, unit="s", origin=pd.Timestamp(a.start))
    tx["TX_FRAUD"] = 0
    tx["TX_FRAUD_SCENARIO"] = 0
    # Scenario 1: any amount above 220.
    big = tx.TX_AMOUNT > 220
    tx.loc[big, ["TX_FRAUD", "TX_FRAUD_SCENARIO"]] = [1, 1]
    # Scenario 2: two terminals a day, all their transactions for 28 days.
    terminals = pd.Series(range(a.terminals))
    last = tx.TX_TIME_DAYS.max()
    for day in range(last):
        hit = terminals.sample(n=2, random_state=day + day_off)
        sel = tx[(tx.TX_TIME_DAYS >= day) & (tx.TX_TIME_DAYS < day + 28) & tx.TERMINAL_ID.isin(hit)]
        tx.loc[sel.index, ["TX_FRAUD", "TX_FRAUD_SCENARIO"]] = [1, 2]
    # Scenario 3: three customers a day, a third of their next 14 days' transactions at 5x.
    customers = pd.Series(range(a.customers))
    for day in range(last):
        hit = customers.sample(n=min(3, a.customers), random_state=day + day_off).values
        sel = tx[(tx.TX_TIME_DAYS >= day) & (tx.TX_TIME_DAYS < day + 14) & tx.CUSTOMER_ID.isin(hit)]
        random.seed(day + day_off)
        idx = random.sample(list(sel.index.values), k=int(len(sel) / 3))
        tx.loc[idx, "TX_AMOUNT"] = tx.loc[idx, "TX_AMOUNT"] * 5
        tx.loc[idx, ["TX_FRAUD", "TX_FRAUD_SCENARIO"]] = [1, 3]

    tx["TX_AMOUNT"] = tx.TX_AMOUNT.round(2)
    tx["TX_DATETIME"] = tx.TX_DATETIME.dt.strftime("%Y-%m-%d %H:%M:%S")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    cols = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT",
            "TX_TIME_SECONDS", "TX_TIME_DAYS", "TX_FRAUD", "TX_FRAUD_SCENARIO"]
    tx[cols].to_csv(a.out, index=False)
    by = tx.TX_FRAUD_SCENARIO.value_counts().to_dict()
    print(f"{a.out}: {len(tx)} transactions, {int(tx.TX_FRAUD.sum())} frauds "
          f"(scenario 1: {by.get(1, 0)}, 2: {by.get(2, 0)}, 3: {by.get(3, 0)})")


if __name__ == "__main__":
    main()
