#!/usr/bin/python3
"""The pandas peer of the pipeline benchmark (bench/cmd/pipebench).

Performs the benchmark task the way a Python user would with pandas:
read_csv with explicit dtypes, keep the rows matching a filter
(DataFrame.query), z-score columns with the mean and population standard
deviation (ddof=0) of the filtered rows, replace a categorical column by
int8 indicator columns for a fixed category list, and write Parquet
(snappy) when a Parquet engine (pyarrow or fastparquet) is importable,
else CSV. Prints one JSON line: output format, rows out and the in-process
time of each phase.

    /usr/bin/python3 bench/peers/pandas/task.py --input in.csv --output out \
        --columns id:int64,ts:timestamp,... --filter "amount > 0 and active" \
        --standardize amount,score --one-hot country --categories AU,BR,...

--output is given without extension; .parquet or .csv is appended and the
path written is reported as "output".
"""

import argparse
import importlib.util
import json
import sys
import time

import pandas as pd

DTYPES = {"int64": "int64", "float64": "float64", "string": "object", "bool": "bool"}


def parquet_engine():
    for name in ("pyarrow", "fastparquet"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True, help="output path without extension")
    p.add_argument("--columns", required=True, help="name:type,... with type int64, float64, string, bool or timestamp")
    p.add_argument("--timestamp-format", default="%Y-%m-%dT%H:%M:%S")
    p.add_argument("--filter", default="")
    p.add_argument("--standardize", default="")
    p.add_argument("--one-hot", default="")
    p.add_argument("--categories", default="")
    p.add_argument("--prefix", default="")
    p.add_argument("--format", default="auto", choices=("auto", "parquet", "csv"))
    a = p.parse_args(argv)

    names, dtypes, dates = [], {}, []
    for part in a.columns.split(","):
        name, typ = part.split(":", 1)
        names.append(name)
        if typ == "timestamp":
            dates.append(name)
        elif typ in DTYPES:
            dtypes[name] = DTYPES[typ]
        else:
            sys.exit("unknown column type %r" % typ)

    engine = parquet_engine()
    fmt = a.format
    if fmt == "auto":
        fmt = "parquet" if engine else "csv"
    if fmt == "parquet" and not engine:
        sys.exit("no Parquet engine: install pyarrow or fastparquet")

    t0 = time.perf_counter()
    df = pd.read_csv(a.input, usecols=names, dtype=dtypes, na_filter=False)
    for name in dates:
        df[name] = pd.to_datetime(df[name], format=a.timestamp_format)
    t1 = time.perf_counter()

    if a.filter:
        # query returns a new frame; assigning columns to it is intended.
        pd.options.mode.chained_assignment = None
        df = df.query(a.filter)
    for col in [c for c in a.standardize.split(",") if c]:
        x = df[col].astype("float64")
        df[col] = (x - x.mean()) / x.std(ddof=0)
    if a.one_hot:
        prefix = a.prefix or a.one_hot + "_"
        src = df[a.one_hot]
        pos = df.columns.get_loc(a.one_hot)
        ind = {prefix + c: (src == c).astype("int8") for c in a.categories.split(",") if c}
        df = pd.concat([df.iloc[:, :pos], pd.DataFrame(ind, index=df.index), df.iloc[:, pos + 1:]], axis=1)
    t2 = time.perf_counter()

    out = a.output + "." + fmt
    if fmt == "parquet":
        df.to_parquet(out, engine=engine, compression="snappy", index=False)
    else:
        df.to_csv(out, index=False, date_format="%Y-%m-%d %H:%M:%S")
    t3 = time.perf_counter()

    print(json.dumps({
        "output": out,
        "format": fmt,
        "parquet_engine": engine or "",
        "pandas": pd.__version__,
        "rows_out": int(len(df)),
        "read_s": t1 - t0,
        "transform_s": t2 - t1,
        "write_s": t3 - t2,
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
