"""The `tasktune` command. Thin: parse arguments, call one recipe, turn user errors
into one clear message and exit status 1 (no traceback)."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys
import typing

from tasktune.config import ConfigError, RunConfig, field_docs, load_config

__all__ = ["main", "build_parser"]


def _columns(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        ours, sep, theirs = item.partition("=")
        if not sep:
            raise ValueError(f"--column {item!r}: expected FIELD=COLUMN, e.g. instruction=question")
        out[ours] = theirs
    return out


def _trust_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a run folder whose config sets trust_remote_code (runs Python code shipped with its model)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: only `localhost` is known to stay on this machine
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tasktune", description="Teach a chat LLM one task, and prove it learned it.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="evaluate the base model, fine-tune, evaluate again, write the run folder")
    p.add_argument("config", help="YAML config (see `tasktune config`)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.max_steps=100 output_dir=runs/x")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in output_dir from its newest complete checkpoint (train.save_every)")
    again.add_argument("--overwrite", action="store_true", help="delete a run already in output_dir and start over")

    p = sub.add_parser("eval", help="the base model and one or more runs side by side on the first run's held-out set")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--run", action="append", help="run folder written by `tasktune train`; repeat to compare runs")
    who.add_argument("--gguf", help="a file written by `tasktune export --format gguf`: its run's held-out set, "
                                    "answered through llama.cpp")
    p.add_argument("--out", default=None, help="with --gguf: folder for the results (default: FILE-eval beside it)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. eval.max_examples=500")
    _trust_flag(p)

    p = sub.add_parser("predict", help="answer every prompt of a JSONL file with a run's model")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--input", required=True, help='JSONL rows {"prompt": ...} or alpaca rows')
    p.add_argument("--output", required=True, help="JSONL: each input row plus prediction and input")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. quantization=int8")
    _trust_flag(p)

    p = sub.add_parser("chat", help="interactive, streaming, multi-turn chat")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--run", help="run folder")
    who.add_argument("--model", help="a base model alone (bundled name, folder or .gguf)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="cap per answer (default: the run's, else 256)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. quantization=int8")
    _trust_flag(p)

    p = sub.add_parser("data", help="check or preview data")
    dsub = p.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser("check", help="validate a data file: row count, or every bad row as FILE:ROW: reason")
    c.add_argument("file")
    c.add_argument("--format", choices=["auto", "json", "jsonl"], default="auto")
    c.add_argument("--column", action="append", default=[], metavar="FIELD=COLUMN", help="e.g. instruction=question")
    v = dsub.add_parser("preview", help="print rendered training examples with the supervised span marked")
    v.add_argument("config")
    v.add_argument("overrides", nargs="*", metavar="key=value")
    v.add_argument("-n", type=int, default=3, help="examples to show")

    p = sub.add_parser("serve", help="an OpenAI-compatible API (chat/completions, completions, models) for runs")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--run", action="append", help="run folder, served under its folder name; repeat for several")
    who.add_argument("--model", help="a base model alone (bundled name, folder or .gguf)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` (default: $TASKTUNE_API_KEY, else none)")
    p.add_argument("--max-tokens", type=int, default=512, help="the largest max_tokens a request may ask for")
    p.add_argument("--max-queue", type=int, default=64, help="requests that may wait; more are answered 429 (retry later)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="allow a --host other than loopback without an API key (anyone who reaches the port can use it)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. quantization=int8")
    _trust_flag(p)

    p = sub.add_parser("export", help="merge a run into its base: a Hugging Face folder, or GGUF files for llama.cpp")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--out", required=True, help="new folder: safetensors weights, config, tokenizer with chat template "
                                                "(hf), or one .gguf file per --quant with its Modelfile (gguf)")
    p.add_argument("--format", choices=["hf", "gguf"], default="hf")
    p.add_argument("--quant", nargs="+", default=["f16", "q8_0"], metavar="KIND",
                   help="gguf: f32 f16 q8_0 q4_0 q4_1 q5_0 q4_k_m q5_k_m q6_k (K-quants need llama-cpp-python)")
    p.add_argument("--no-check", action="store_true",
                   help="gguf: skip answering the held-out problems through llama.cpp for each file")
    p.add_argument("--check-examples", type=int, default=None, metavar="N",
                   help="gguf: check on the first N held-out problems only (default: all)")
    _trust_flag(p)

    m = sub.add_parser("memory", help="the FP16/INT8/INT4 x inference/tuning memory table of a model")
    m.add_argument("--model", default="smollm2-135m", help="bundled name, folder, .gguf, cached hub id, or a config.json")
    m.add_argument("--batch", type=int, default=1)
    m.add_argument("--tokens", type=int, default=512, help="inference: prompt + answer tokens per sequence")
    m.add_argument("--tune-tokens", type=int, default=128, help="tuning: tokens per training sequence")
    m.add_argument("--pre-seq-len", type=int, default=128, help="P-Tuning v2 virtual tokens")
    m.add_argument("--no-measure", action="store_true", help="estimates only, even where the weights are local")
    m.add_argument("--export", default=None, metavar="DIR",
                   help="instead: each GGUF file of a `tasktune export --format gguf` folder in llama.cpp beside the run "
                        "in tasktune: file size, resident memory, tokens/s (1 stream and batched), exact match")
    m.add_argument("--streams", type=int, default=32, help="with --export: prompts answered together")
    m.add_argument("--new-tokens", type=int, default=64, help="with --export: tokens generated a prompt")
    sub.add_parser("config", help="list every config key with its default and meaning")
    return parser


def _print_config_help(cls: type = RunConfig, prefix: str = "") -> None:
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            print(f"\n{prefix}{f.name}:")
            _print_config_help(hints[f.name], prefix + f.name + ".")
            continue
        print(f"  {prefix}{f.name} = {value!r}\n      {docs.get(f.name, '')}")


def run(args: argparse.Namespace) -> int:
    from tasktune import recipes

    if getattr(args, "trust_remote_code", None) is not None and getattr(args, "run", None):
        runs = args.run if isinstance(args.run, list) else [args.run]
        recipes.refuse_remote_code(runs, getattr(args, "overrides", []), args.trust_remote_code)

    if args.command == "train":
        recipes.finetune(load_config(args.config, args.overrides), resume=args.resume, overwrite=args.overwrite)
    elif args.command == "eval" and args.gguf:
        recipes.evaluate_gguf(args.gguf, args.out, args.overrides)
    elif args.command == "eval":
        recipes.evaluate_runs(args.run, args.overrides)
    elif args.command == "predict":
        n = recipes.predict(args.run, args.input, args.output, args.overrides)
        print(f"wrote {n} predictions to {args.output}")
    elif args.command == "chat":
        recipes.chat(args.run, args.model, args.max_new_tokens, args.overrides)
    elif args.command == "data" and args.data_command == "check":
        problems = recipes.check_data(args.file, args.format, _columns(args.column))
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(f"{args.file}: {len(problems)} bad row(s)", file=sys.stderr)
            return 1
    elif args.command == "data":
        recipes.preview_data(load_config(args.config, args.overrides), args.n)
    elif args.command == "serve":
        key = args.api_key or os.environ.get("TASKTUNE_API_KEY") or None  # an empty key is no key
        if args.max_queue < 1:
            raise ValueError(f"--max-queue {args.max_queue}: at least 1 request must be able to wait")
        if key is None and not _loopback(args.host) and not args.insecure_no_auth:
            raise ValueError(f"--host {args.host} is reachable from other machines and no API key is set: give --api-key "
                             "(or $TASKTUNE_API_KEY), or --insecure-no-auth to serve without one")
        recipes.serve(args.run or [], args.model, args.host, args.port, key, args.max_tokens, args.overrides,
                      args.max_queue)
    elif args.command == "export" and args.format == "gguf":
        recipes.export_gguf(args.run, args.out, args.quant, not args.no_check, args.check_examples)
        print(f"exported {args.run} to {args.out}: figures in export.json; `ollama create NAME -f FILE.Modelfile`, or "
              "`tasktune eval --gguf FILE` for every suite")
    elif args.command == "export":
        out = recipes.export_run(args.run, args.out)
        print(f"exported {args.run} to {out}: load it with transformers' AutoModelForCausalLM.from_pretrained({str(out)!r})")
    elif args.command == "memory" and args.export:
        print(recipes.gguf_table(args.export, args.streams, args.new_tokens))
    elif args.command == "memory":
        settings = recipes.MemorySettings(args.batch, args.tokens, args.tune_tokens, args.pre_seq_len, not args.no_measure)
        print(recipes.memory_table(args.model, settings))
    elif args.command == "config":
        _print_config_help()
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse, taking ``key=value`` overrides wherever they stand: argparse ends a
    ``nargs="*"`` positional at the first flag, so ``train CONFIG --overwrite
    train.lr=1e-3`` would otherwise be refused."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in rest):
        args.overrides = [*args.overrides, *rest]
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return run(args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        from tasktune.train import TrainingStopped

        if not isinstance(exc, TrainingStopped):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
