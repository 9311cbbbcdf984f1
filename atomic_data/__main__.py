"""Command line of the converters (also ``recbole-llm data ...``).

    python -m atomic_data list
    python -m atomic_data download ml-1m [--out DIR] [--offline]
    python -m atomic_data convert ml-1m --raw path/to/ml-1m.zip --out DIR
    python -m atomic_data convert amazon-beauty --raw reviews_Beauty_5.json.gz meta_Beauty.json.gz --out DIR
    python -m atomic_data convert mmrec --raw path/to/baby --name baby --out DIR

``download`` fetches the official raw files into ``DIR/<name>/raw/`` (resumable, verified) and
converts them into ``DIR/<name>/``; ``convert`` converts files you already have. Without
``--out`` the folder recbole-llm's Config searches is used (``RECBOLE_LLM_DATA`` or
``~/.cache/recbole_llm/datasets``), so ``--dataset=<name>`` finds the result.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from pathlib import Path

import atomic_data
from atomic_data.download import DownloadError


def _default_out() -> Path:
    from recbole_llm.paths import default_data_dir

    return default_data_dir()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atomic_data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the datasets, their sources and checksum status")

    dl = sub.add_parser("download", help="download the official raw files and convert them")
    dl.add_argument("name")
    dl.add_argument("--out", type=Path, default=None, help="root folder; the dataset goes to OUT/<name>/")
    dl.add_argument("--offline", action="store_true", help="never use the network; say what to fetch instead")
    dl.add_argument("--force", action="store_true", help="convert again even if OUT/<name>/<name>.inter exists")
    dl.add_argument("--with-reviews", action="store_true", help="also fetch optional review files (Goodreads)")
    dl.add_argument("--no-progress", action="store_true")

    cv = sub.add_parser("convert", help="convert raw files you already have")
    cv.add_argument("name", help="dataset or format name (see 'list')")
    cv.add_argument("--raw", type=Path, nargs="+", required=True, help="raw files, or a folder holding them")
    cv.add_argument("--out", type=Path, default=None, help="root folder; the dataset goes to OUT/<name>/")
    cv.add_argument("--name", dest="out_name", default=None, help="name of the converted dataset (default: the dataset's)")

    for p in (dl, cv):
        p.add_argument("--keep", choices=("rated", "read", "all"), default=None, help="Goodreads: which shelf entries to keep")
        p.add_argument("--no-reviews", action="store_true", help="Amazon: do not write the <name>.review file")
        p.add_argument("-v", "--verbose", action="store_true")
    return parser


def _options(spec, args) -> dict:
    """Converter options given on the command line that this converter accepts."""
    wanted = {"keep": args.keep, "write_reviews": False if args.no_reviews else None}
    accepted = inspect.signature(spec.convert).parameters
    return {k: v for k, v in wanted.items() if v is not None and k in accepted}


def _list() -> int:
    for name, spec in sorted(atomic_data.datasets().items()):
        print(f"{name}\n  {spec.description}\n  source: {spec.homepage}")
        for remote in spec.files:
            if remote.md5 or remote.sha256:
                check = "verified by " + ("sha256+md5" if remote.md5 and remote.sha256 else "sha256" if remote.sha256 else "md5")
            else:
                check = "no published checksum (completeness only)"
            optional = "" if remote.required else " [optional]"
            print(f"    {remote.url}{optional}\n      {check}")
        if not spec.downloadable:
            print("    (no stable URL: convert a local copy with 'convert --raw')")
        if spec.licence:
            print(f"  licence: {spec.licence}")
        if spec.notes:
            print(f"  note: {spec.notes}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        spec = atomic_data.get_spec(args.name)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    out = args.out or _default_out()
    try:
        if args.command == "download":
            optional = [f.filename for f in spec.files if not f.required] if args.with_reviews else []
            folder = atomic_data.prepare(
                spec,
                out,
                offline=True if args.offline else None,
                progress=not args.no_progress,
                force=args.force,
                optional=optional,
                **_options(spec, args),
            )
        else:
            raw = atomic_data.match_raw_paths(spec, args.raw)
            name = args.out_name or (args.raw[0].name if not spec.downloadable else spec.name)
            folder = atomic_data.convert_into(spec, raw, out, name=name, **_options(spec, args))
    except (DownloadError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    print(f"{folder}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
