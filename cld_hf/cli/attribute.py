"""``cld-hf attribute``: the top-k influencers of query samples, from a recorded store.

CLD_inf1 (Appendix F of "Coresets from Trajectories": the correlation of a training sample's
loss differences with one query sample's, :func:`cld_hf.attribution.cld_attribution`) needs
only the loss trajectories the store holds; ``--method tracin`` uses last-layer TracIn at the
end of training (:func:`cld_hf.attribution.tracin_last_layer`) from the store's final
``probs``, ``embeddings``, ``query_probs`` and ``query_embeddings`` arrays. The attribution is
computed a block of query samples at a time, so memory stays bounded for any store.

The result is an Arrow IPC file (``.arrow``: one row per query sample and rank) or JSON
(``.json``: one entry per query sample), never a pickle. Rows are the store's sample indices:
``train_index`` is the row of the training set the store was recorded on, ``query_index`` that
of the query set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import positive_int

EPILOG = """\
examples:
  cld-hf attribute out/trajectories -o influencers.arrow              # top 10, every query sample
  cld-hf attribute out/trajectories --query 0 5 7 -k 20 -o top20.json
  cld-hf attribute out/trajectories --opponents -o opponents.arrow    # most negative first
  cld-hf attribute out/trajectories --first 30 -o early.arrow         # the first 30 snapshots
  cld-hf attribute out/trajectories --method tracin -o tracin.arrow   # needs the final signals

read the Arrow file with pyarrow.ipc.open_file(path).read_all() (or datasets.Dataset.from_file);
columns: query_index, query_label, rank (1 = strongest), train_index, train_label, attribution.
"""

METHODS = ("cld_inf1", "tracin")
TRACIN_ARRAYS = ("probs", "embeddings", "query_probs", "query_embeddings")
_BLOCK_BYTES = 256 * 2**20  # of one (N, block of queries) attribution block


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "attribute",
        help="top-k CLD_inf1 influencers of query samples, from a store",
        description="For each query sample, the k training samples with the highest CLD_inf1 "
        "attribution (Appendix F: correlation of their loss differences), from a "
        "LossTrajectories store; written as Arrow (.arrow) or JSON (.json).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", help="directory of a LossTrajectories store (holds store.json)")
    p.add_argument("-o", "--output", required=True,
                   help="output file: .arrow (Arrow IPC) or .json")
    p.add_argument("-k", "--k", type=positive_int, default=10,
                   help="training samples per query sample (default 10)")
    p.add_argument("--query", type=int, nargs="+", default=None, metavar="ROW",
                   help="query rows of the store (default: every query sample)")
    p.add_argument("--method", choices=METHODS, default="cld_inf1",
                   help="cld_inf1 (default; losses only) or tracin (last layer, final "
                   "checkpoint; needs the store's final probs/embeddings arrays)")
    p.add_argument("--opponents", action="store_true",
                   help="the k most negative attributions instead (most negative first)")
    p.add_argument("--first", type=positive_int, default=None,
                   help="cld_inf1: use the first K snapshots")
    p.add_argument("--every", type=positive_int, default=1,
                   help="cld_inf1: use every J-th snapshot")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def _output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".arrow", ".json"):
        raise ValueError(f"--output {str(path)!r} must end in .arrow (Arrow IPC) or .json; "
                         f"e.g. --output influencers.arrow.")
    return suffix[1:]


def influencers(store, *, k: int = 10, query=None, method: str = "cld_inf1",
                largest: bool = True, first=None, every: int = 1):
    """The top-``k`` training samples of each query sample, computed a block of query samples
    at a time.

    Parameters
    ----------
    store : LossTrajectories
    k : int, default 10
    query : int array, optional
        Query rows (default: all).
    method : {"cld_inf1", "tracin"}, default "cld_inf1"
    largest : bool, default True
        ``False``: the most negative attributions.
    first, every
        The snapshot window of CLD_inf1.

    Returns
    -------
    (query_rows, train_rows (Q', k), attributions (Q', k))

    Examples
    --------
    >>> import tempfile
    >>> from cld_hf import LossTrajectories
    >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 0, 1], [0])
    >>> for a, b, c, qv in [(4.0, 1.0, 2.0, 5.0), (3.0, 2.0, 2.0, 4.0), (1.0, 4.0, 2.0, 2.0)]:
    ...     _ = store.append([a, b, c], [qv])
    >>> q, rows, vals = influencers(store, k=2)
    >>> q.tolist(), rows.tolist(), vals.round(3).tolist()
    ([0], [[0, 2]], [[1.0, 0.0]])
    """
    import numpy as np

    from ..attribution import cld_attribution, top_influencers, tracin_last_layer

    if method not in METHODS:
        raise ValueError(f"method == {method!r}, must be one of {list(METHODS)}.")
    n, nq = store.num_train, store.num_query
    if k > n:
        raise ValueError(f"--k {k} is more than the {n} training samples of the store; give "
                         f"--k {n} or less.")
    rows = np.arange(nq) if query is None else np.asarray(query, dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= nq):
        bad = rows[(rows < 0) | (rows >= nq)]
        raise ValueError(f"--query holds rows {bad[:10].tolist()} outside [0, {nq - 1}] (the "
                         f"store has {nq} query samples).")
    if method == "cld_inf1":
        if store.streaming:
            raise ValueError(f"{store.directory} is a streaming store: it keeps no loss "
                             f"trajectories, which CLD_inf1 correlates. Record without "
                             f"streaming=True.")
        train, queries = store.train_losses(), store.query_losses()
    else:
        if first is not None or every != 1:
            raise ValueError("--first and --every apply to cld_inf1 only; tracin uses the "
                             "final checkpoint.")
        missing = [a for a in TRACIN_ARRAYS if a not in store.array_names]
        if missing:
            raise KeyError(f"The store {str(store.directory)!r} lacks the arrays {missing} "
                           f"that --method tracin needs (it has {store.array_names}); record "
                           f"them with signals={list(TRACIN_ARRAYS)}.")
        arrays = {a: store.load_array(a) for a in TRACIN_ARRAYS}
    block = max(1, _BLOCK_BYTES // max(1, 4 * n))
    top_rows = np.empty((len(rows), k), dtype=np.int64)
    top_vals = np.empty((len(rows), k), dtype=np.float32)
    for start in range(0, len(rows), block):
        part = rows[start:start + block]
        if method == "cld_inf1":
            a = cld_attribution(train, queries, query_index=part, first=first, every=every)
        else:
            a = tracin_last_layer(arrays["probs"], arrays["embeddings"], store.train_labels,
                                  arrays["query_probs"], arrays["query_embeddings"],
                                  store.query_labels, query_index=part)
        idx, val = top_influencers(a, k, largest=largest)
        top_rows[start:start + len(part)] = idx
        top_vals[start:start + len(part)] = val
    return rows, top_rows, top_vals


def _provenance(store, args) -> dict:
    return {"method": args.method, "k": args.k, "largest": not args.opponents,
            "first": args.first, "every": args.every, "store": str(store.directory),
            "store_id": store.store_id, "num_snapshots": store.num_snapshots,
            "identity": store.identity}


def write_influencers(path, query_rows, train_rows, values, store, info: dict) -> Path:
    """Write the influencers as Arrow IPC (``.arrow``) or JSON (``.json``), atomically.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import pyarrow.ipc as ipc
    >>> from cld_hf import LossTrajectories
    >>> store = LossTrajectories.create(tempfile.mkdtemp(), [0, 1], [1])
    >>> path = os.path.join(tempfile.mkdtemp(), "top.arrow")
    >>> _ = write_influencers(path, np.array([0]), np.array([[1, 0]]),
    ...                       np.array([[0.5, -0.5]], np.float32), store, {"method": "cld_inf1"})
    >>> ipc.open_file(path).read_all().to_pydict()["train_index"]
    [1, 0]
    """
    import numpy as np
    import pyarrow as pa

    from ..fileio import atomic_write_arrow, atomic_write_json

    path = Path(path)
    fmt = _output_format(path)
    q, k = train_rows.shape
    qlab, tlab = store.query_labels[query_rows], store.train_labels[train_rows]
    if fmt == "arrow":
        schema = pa.schema([("query_index", pa.int64()), ("query_label", pa.int64()),
                            ("rank", pa.int32()), ("train_index", pa.int64()),
                            ("train_label", pa.int64()), ("attribution", pa.float32())],
                           metadata={"cld_hf": json.dumps(info)})
        table = pa.Table.from_arrays(
            [pa.array(np.repeat(query_rows, k), pa.int64()),
             pa.array(np.repeat(qlab, k), pa.int64()),
             pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), q), pa.int32()),
             pa.array(train_rows.reshape(-1), pa.int64()),
             pa.array(tlab.reshape(-1), pa.int64()),
             pa.array(values.reshape(-1).astype(np.float32), pa.float32())], schema=schema)
        return atomic_write_arrow(path, table)
    queries = [{"query_index": int(r), "query_label": int(lab), "train_index": t.tolist(),
                "train_label": tl.tolist(), "attribution": [round(float(v), 7) for v in val]}
               for r, lab, t, tl, val in zip(query_rows, qlab, train_rows, tlab, values)]
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, dict(info, queries=queries))


def run(args) -> int:
    import logging

    from ..trajectories import LossTrajectories

    out = Path(args.output)
    _output_format(out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"--output {str(out)!r} exists; choose another file or pass "
                              f"--overwrite.")
    store = LossTrajectories(args.store)
    rows, top, vals = influencers(store, k=args.k, query=args.query, method=args.method,
                                  largest=not args.opponents, first=args.first, every=args.every)
    write_influencers(out, rows, top, vals, store, _provenance(store, args))
    logging.getLogger("cld_hf.attribute").info(
        "Top-%d %s of %d query sample(s) by %s -> %s", args.k,
        "opponents" if args.opponents else "influencers", len(rows), args.method, out)
    return 0
