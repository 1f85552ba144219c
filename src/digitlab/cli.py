"""The `digitlab` command: thin argparse wrappers over the Python API; user mistakes print one line."""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import DigitlabError
from .weights import reader_path

USAGE_ERROR = 2  # every user mistake (bad flag, option, path, file, full disk); predict's 3 means "some inputs failed"


class _Parser(argparse.ArgumentParser):
    """argparse with the same one-line error as every other user mistake (its default prints the usage block too)."""

    def error(self, message: str) -> None:
        print(f"digitlab: error: {message} (see: {self.prog} --help)", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def _check_output_folder(path: str | Path | None, what: str) -> None:
    """A folder we will create or write into must not be an existing file: say so before loading anything."""
    if path is not None:
        from .training.loop import check_output_folder

        check_output_folder(Path(path), what)


def _add_data_args(p: argparse.ArgumentParser, dataset_default: str | None = None) -> None:
    p.add_argument("--dataset", default=dataset_default, help="mnist, fashion-mnist, kmnist, cifar10, mnist-sample or folder:PATH")
    p.add_argument("--data-root", help="folder holding mnist/, fashion-mnist/ ... (default: $DIGITLAB_DATA, then the download cache)")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model and write a run folder", description="Train a model. Flags override --config; "
                       "unset flags take the recipe's or the model's defaults.")
    p.add_argument("--model", help="model name (digitlab models list); default lenet5")
    _add_data_args(p)
    p.add_argument("--recipe", help="named option set: sprint (99%% in one epoch), fast (time to accuracy), accurate (best single model in 10 min on a 2-core CPU), "
                   "reader (the shipped photo reader: digits + not-digit), teach (fine-tuning with --init-from) or pytorch-example")
    p.add_argument("--config", help="TOML/YAML/JSON file with the same options")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", help="sgd, adam, adamw, rmsprop or adadelta")
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", help="none, step, cosine or onecycle")
    p.add_argument("--gamma", type=float, help="LR factor per epoch for --schedule step")
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--augment", help="none, light, strong (digits: affine warps; colour: crop + flip) or flip (crop + flip, any image)")
    p.add_argument("--reject", type=float, metavar="FRACTION",
                   help="digit datasets: add this fraction of 'not-digit' wrong cuts (pairs, parts of digits) as an 11th class")
    p.add_argument("--precision", help="training arithmetic: auto (bf16 on CUDA and on CPUs with native bf16), fp32 or bf16")
    p.add_argument("--ema", type=float, help="decay of an EMA of the weights, e.g. 0.995, warmed up as (1+n)/(10+n) over the first steps; the EMA weights are evaluated and saved (0 = off)")
    p.add_argument("--val-split", type=float, help="fraction of train held out for validation (default 0.1)")
    p.add_argument("--early-stop", type=int, metavar="PATIENCE")
    p.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop before an epoch that would overrun this training time")
    p.add_argument("--seed", type=int)
    p.add_argument("--split-seed", type=int, help="seed of the train/validation split (default: --seed)")
    p.add_argument("--ensemble", type=int, metavar="N", help="train N members (one run folder each, same validation split, "
                   "their own seeds) and save them as one model that averages their probabilities")
    p.add_argument("--device", help="auto, cpu, cuda or mps")
    p.add_argument("--threads", type=int, help="CPU threads (default: the CPUs not already busy, by the load average; at least 1)")
    p.add_argument("--image-size", type=int, help="resize images to this square size")
    p.add_argument("--stream", action="store_true", default=None,
                   help="image folders: decode from disk each epoch with DataLoader workers (automatic when the folder does not fit in memory)")
    p.add_argument("--workers", type=int, help="DataLoader processes for a streamed folder (default: one per core, at most 8)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="force grayscale (1) or RGB (3)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE", help="extra model option, e.g. dropout=0.3")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--tensorboard", action="store_true", default=None, help="log to RUN/tensorboard")
    p.add_argument("--track-test", action="store_true", default=None, help="also score the test set each epoch (reporting only)")
    p.add_argument("--out", help="run folder (default runs/MODEL-DATASET-TIME)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    p.add_argument("--init-from", metavar="RUN", help="fine-tune: start from this run folder, checkpoint or 'reader' (the shipped "
                   "model), keeping its model, classes and normalisation, e.g. on the corrections of digitlab serve --corrections")
    p.add_argument("--replay", type=int, metavar="N", help="with --init-from: N random training images of the source's dataset "
                   "(MNIST for the reader) mixed into every epoch, so it does not forget (default 500; 0 = none)")
    p.add_argument("--nproc", type=int, help="launch N processes with torchrun (DistributedDataParallel)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    if args.nproc and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _launch_torchrun(args.nproc, args.argv)
    from .training import train

    model_args = {}
    for item in args.model_arg:
        key, sep, value = item.partition("=")
        if not sep:
            raise DigitlabError(f"--model-arg expects KEY=VALUE, got '{item}'")
        try:
            model_args[key] = json.loads(value)
        except json.JSONDecodeError:
            model_args[key] = value
    options = {k: v for k, v in vars(args).items() if k not in ("command", "func", "model_arg", "resume", "nproc", "config", "argv")}
    if model_args:
        options["model_args"] = model_args
    train(resume=args.resume, config_file=args.config, **options)
    return 0


def _launch_torchrun(nproc: int, argv: list[str]) -> int:
    """Relaunch this very command (the argv given to main(), not sys.argv) under torchrun, without --nproc."""
    import subprocess

    if nproc < 1:
        raise DigitlabError(f"--nproc must be at least 1, got {nproc}")
    cleaned, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        cleaned.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "digitlab", *cleaned]
    print("digitlab: launching", " ".join(cmd[1:]), flush=True)
    return subprocess.call(cmd)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .predict.classifier import load
    from .runs import atomic_write_text, clean_stale_temps, resolve_checkpoint
    from .training.report import write_eval_pictures

    _check_output_folder(args.out, "--out")
    path = resolve_checkpoint(args.checkpoint)
    clean_stale_temps(path.parent)
    clf = load(path, device=args.device)
    dataset = args.dataset or clf.record["dataset"]
    from .data import load_dataset

    c, h, _ = clf.input_shape
    splits = load_dataset(dataset, root=args.data_root, val_split=0.0, image_size=h, channels=c)
    data = splits.test if args.split == "test" else splits.train
    try:
        result = clf.evaluate(data)
    except DigitlabError as e:
        raise DigitlabError(f"{dataset}: {e}") from None
    out = Path(args.out) if args.out else (path.parent / f"eval-{dataset.replace('folder:', '').replace('/', '_')}-{args.split}")
    _check_output_folder(out, "the evaluation folder")
    out.mkdir(parents=True, exist_ok=True)
    write_eval_pictures(out, result, data)
    report = {"checkpoint": str(path), "dataset": dataset, "split": args.split, **result.to_dict()}
    atomic_write_text(out / "eval.json", json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{path} on {dataset} ({args.split}, {len(data)} images)")
    print(f"accuracy: {100 * result.accuracy:.2f}%   loss: {result.loss:.4f}")
    print(f"{'class':>14} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}")
    for r in result.per_class():
        print(f"{r['class']:>14} {r['precision']:>9.4f} {r['recall']:>7.4f} {r['f1']:>7.4f} {r['support']:>8}")
    k = len(result.classes)
    width = max(5, max(len(str(int(v))) for v in result.confusion.flatten()) + 1)
    print("confusion matrix (rows: true, columns: predicted)")
    print(" " * 6 + "".join(f"{c[:width - 1]:>{width}}" for c in result.classes))
    for i in range(k):
        print(f"{result.classes[i][:5]:>5} " + "".join(f"{int(v):>{width}}" for v in result.confusion[i]))
    print(f"pictures and eval.json in {out}")
    return 0


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def _expand_inputs(inputs: list[str]) -> list[str]:
    """Files as given, folders as their images (sorted), globs expanded, '-' for stdin."""
    import glob

    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if item == "-" or p.is_file():
            out.append(item)
        elif p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            out += found or [item]  # an empty folder is reported as a failed input
        elif any(ch in item for ch in "*?["):
            out += sorted(glob.glob(item, recursive=True)) or [item]
        else:
            out.append(item)
    return out


def _model_and_inputs(items: list[str]) -> tuple[str | None, list[str]]:
    """`[MODEL] INPUT...`: the first item is the model when it names one (a run folder, checkpoint or .onnx file);
    otherwise every item is an input and the shipped reader reads them."""
    from .predict.classifier import is_model_path

    first = Path(items[0])
    if is_model_path(first):
        if len(items) == 1:
            raise DigitlabError(f"{items[0]} is a model; name the images to read after it")
        return items[0], items[1:]
    if len(items) > 1 and not first.exists() and first.suffix.lower() not in IMAGE_SUFFIXES and items[0] != "-":
        raise DigitlabError(f"{items[0]}: no such run folder, checkpoint or image")  # most likely a mistyped model
    return None, items


def cmd_predict(args: argparse.Namespace) -> int:
    import csv

    from .predict import load

    if args.top_k < 1:
        raise DigitlabError("--top-k must be at least 1")
    _check_output_folder(args.save_preprocessed, "--save-preprocessed")
    model, inputs = _model_and_inputs(args.inputs)
    clf = load(model, backend=args.backend)
    save_dir = Path(args.save_preprocessed) if args.save_preprocessed else None
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
    results, failed = [], 0
    writer = csv.writer(sys.stdout) if args.csv else None
    if writer:
        writer.writerow(["input", "label", "prob", "top_k", "error"])
    for item in _expand_inputs(inputs):
        try:
            source = sys.stdin.buffer.read() if item == "-" else item
            if item != "-" and Path(item).is_dir():
                raise DigitlabError("folder holds no images")
            if item != "-" and not Path(item).exists():
                raise DigitlabError("no such file")
            reading = clf.read(source, multi=args.multi, top_k=args.top_k)
        except DigitlabError as e:
            failed += 1
            message = str(e).removeprefix(f"{item}: ")
            results.append({"input": item, "error": message})
            if writer:
                writer.writerow([item, "", "", "", message])
            elif not args.json:
                print(f"{item}: error: {message}", flush=True)
            continue
        if save_dir:
            _save_preprocessed(save_dir, item, reading)
        entry = {"input": item, "label": reading.text, "prob": round(reading.prob, 6)}
        if args.multi:
            entry["digits"] = [d.to_dict() for d in reading.digits]
            entry["alternatives"] = [[text, round(score, 4)] for text, score in reading.alternatives]
        else:
            entry["top_k"] = [[n, p] for n, p in reading.digits[0].top_k]
        results.append(entry)
        if writer:
            tops = reading.digits[0].top_k if not args.multi else [(d.label, d.prob) for d in reading.digits]
            writer.writerow([item, reading.text, f"{reading.prob:.6f}", " ".join(f"{n}:{p:.4f}" for n, p in tops), ""])
        elif not args.json:
            if args.multi:
                detail = "  ".join(f"{d.label} {100 * d.prob:.1f}% @{','.join(map(str, d.box or ()))}" for d in reading.digits)
                others = f"  or: {', '.join(text for text, _ in reading.alternatives)}" if reading.alternatives else ""
                print(f"{item}: {reading.text}  ({detail}){others}")
            else:
                top = ", ".join(f"{n} {100 * p:.1f}%" for n, p in reading.digits[0].top_k)
                print(f"{item}: {reading.text}  ({100 * reading.prob:.1f}%; top {args.top_k}: {top})")
    if args.json:
        print(json.dumps(results, indent=2))
    if failed:
        print(f"digitlab: {failed} of {len(results)} inputs could not be read", file=sys.stderr)
        return 3
    return 0


def _save_preprocessed(folder: Path, item: str, reading) -> None:
    from PIL import Image

    stem = "stdin" if item == "-" else Path(item).stem
    for i, d in enumerate(reading.digits):
        arr = (d.image.transpose(1, 2, 0) * 255).clip(0, 255).astype("uint8")
        name = f"{stem}.png" if len(reading.digits) == 1 else f"{stem}-{i}.png"
        Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(folder / name)


def cmd_export(args: argparse.Namespace) -> int:
    from .predict.onnx import export_onnx
    from .predict.quantize import CALIBRATION_IMAGES, export_int8
    from .runs import clean_stale_temps, resolve_checkpoint

    if args.out and Path(args.out).is_dir():
        raise DigitlabError(f"--out {args.out} is a folder; give the .onnx file name, e.g. {Path(args.out) / 'model.onnx'}")
    if not args.quantize and (args.calibration is not None or args.data_root):
        raise DigitlabError("--calibration and --data-root choose int8 calibration images; add --quantize int8")
    suffix = ".int8.onnx" if args.quantize else ".onnx"
    model = args.model or reader_path()
    out_path = args.out or (None if args.model else f"reader{suffix}")
    target = Path(out_path) if out_path else resolve_checkpoint(model).with_suffix(suffix)
    clean_stale_temps(target.parent)
    if args.quantize:
        count = CALIBRATION_IMAGES if args.calibration is None else args.calibration
        out = export_int8(model, out_path, calibration=count, data_root=args.data_root)
        what = "ONNX int8, activation ranges from the run's training images"
    else:
        out = export_onnx(model, out_path)
        what = "ONNX"
    print(f"exported {model} -> {out} ({what}, dynamic batch; input 'images' normalised, output 'logits')")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .serve.app import create_app
        from .serve.server import listen, serve_one, url
        from .serve.workers import serve_balanced
    except ImportError:
        raise DigitlabError("serving needs the serve extra: pip install 'digitlab[serve]'") from None
    import torch

    if args.workers < 1 or args.threads < 1 or not args.timeout > 0:
        raise DigitlabError("--workers and --threads must be at least 1, --timeout above 0")
    _check_output_folder(args.corrections, "--corrections")
    torch.set_num_threads(args.threads)  # one small image per request: more threads cost more than they give
    args.models = args.models or [str(reader_path())]
    options = {"corrections": args.corrections and str(Path(args.corrections).resolve()), "corrections_cap": args.corrections_cap,
               "reload": args.reload}
    app = create_app(args.models, body_timeout=args.timeout, **options)  # load every model first: a bad path is one clear error
    listener = listen(args.host, args.port)  # bound before we say where we serve
    print(f"digitlab: serving {len(args.models)} model(s) at {url(listener)}  (API docs at /docs)"
          f"{f' with {args.workers} worker processes' if args.workers > 1 else ''}"
          f"{f'; corrections go to {args.corrections}' if args.corrections else ''}"
          f"{'; reloading models when their checkpoints change' if args.reload else ''}", flush=True)
    if args.workers > 1:
        del app
        serve_balanced([str(Path(m).resolve()) for m in args.models], listener, args.workers, args.threads, args.timeout, options)
    else:
        serve_one(app, listener, args.timeout)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .predict import load
    from .predict.inspect import inspect_image, write_inspection

    _check_output_folder(args.out, "--out")
    model, images = _model_and_inputs(args.inputs)
    if len(images) != 1:
        raise DigitlabError(f"inspect takes one image, got {len(images)}: {' '.join(images)}")
    clf = load(model)
    result = inspect_image(clf, images[0])
    written = write_inspection(result, Path(args.out))
    top = result.probs.topk(min(3, len(result.classes)))
    print("prediction: " + ", ".join(f"{result.classes[i]} {100 * p:.1f}%" for p, i in zip(top.values.tolist(), top.indices.tolist())))
    for name, act in result.layers:
        print(f"{name:24} {tuple(act.shape)}")
    print(f"{len(written)} pictures in {args.out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    options = {k: getattr(args, k) for k in ("augment", "batch_size", "val_split", "threads", "device") if getattr(args, k) is not None}
    results = compare(models, dataset=args.dataset or "mnist", epochs=args.epochs, budget_seconds=args.budget_seconds,
                      seeds=args.seeds, out=args.out, data_root=args.data_root, **options)
    return 0 if any(r.error is None for r in results) else 1


def cmd_data_list(args: argparse.Namespace) -> int:
    from .data import list_datasets

    for spec in list_datasets():
        print(f"{spec.name:14} {spec.description}")
    print(f"{'folder:PATH':14} your own images, one sub-folder per class (e.g. folder:~/cats_vs_dogs)")
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    import torch

    from .data import load_dataset
    from .training.plots import plot_grid

    splits = load_dataset(args.name, root=args.data_root, val_split=0.0, image_size=args.image_size)
    train, test = splits.train, splits.test
    print(f"dataset: {splits.name}")
    print(f"files:   {splits.source}")
    print(f"train:   {len(train)} images   test: {len(test)} images   shape: {train.shape} uint8")
    print(f"mean/std (train, per channel): {splits.mean} / {splits.std}")
    print(f"{'class':>14} {'train':>7} {'test':>7}")
    for name, n_train, n_test in zip(splits.classes, train.class_counts(), test.class_counts()):
        print(f"{name:>14} {n_train:>7} {n_test:>7}")
    per_class = 10
    picks, titles = [], []
    for k, name in enumerate(splits.classes):
        idx = (train.labels == k).nonzero().flatten()[:per_class]
        picks.append(idx)
        titles += [name] * len(idx)
    out = Path(args.out or f"{splits.name.replace('folder:', '').replace('/', '_').strip('_.')}-samples.png")
    plot_grid(train.take(torch.cat(picks)), titles, out, cols=per_class, suptitle=f"{splits.name}: {per_class} training images per class")
    print(f"sample grid: {out}")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from .models import count_params, create_model, list_models

    print(f"{'name':15} {'family':10} {'params (MNIST)':>15}  description")
    for e in list_models():
        small = e.min_size <= 28  # models for big colour folders are counted at 150x150 RGB, 2 classes
        params = count_params(create_model(e.name, num_classes=10 if small else 2, in_chans=1 if small else 3, image_size=28 if small else 150))
        note = "" if small else " [params at 150x150 RGB, 2 classes]"
        print(f"{e.name:15} {e.family:10} {params:>15,}  {e.description}{note}")
    return 0


def cmd_models_summary(args: argparse.Namespace) -> int:
    from .models import create_model, summary

    if args.input_shape:
        try:
            shape = tuple(int(v) for v in args.input_shape.split(","))
            assert len(shape) == 3 and shape[1] == shape[2] and min(shape) > 0
        except (ValueError, AssertionError):
            raise DigitlabError(f"--input-shape expects C,H,W with H == W, e.g. 3,32,32; got '{args.input_shape}'") from None
        num_classes = args.num_classes or 10
    else:
        from .data import DATASETS

        name = args.dataset or "mnist"
        if name not in DATASETS:
            raise DigitlabError(f"unknown dataset '{name}' for a summary; choose one of: {', '.join(DATASETS)} or pass --input-shape")
        shape = (3, 32, 32) if name == "cifar10" else (1, 28, 28)
        num_classes = args.num_classes or len(DATASETS[name].classes)
    model = create_model(args.name, num_classes=num_classes, in_chans=shape[0], image_size=shape[1])
    print(f'Model: "{args.name}"')
    print(summary(model, shape))
    return 0


def _evaluate_parser(sub) -> None:
    """`digitlab evaluate`."""
    p = sub.add_parser("evaluate", help="score a checkpoint: accuracy, per-class scores, confusion matrix, worst mistakes")
    p.add_argument("checkpoint", help="run folder, .safetensors file or exported .onnx file (fp32 or int8)")
    _add_data_args(p)
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="folder for the pictures and eval.json (default: beside the checkpoint)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=cmd_evaluate)


def _compare_parser(sub) -> None:
    """`digitlab compare`."""
    p = sub.add_parser("compare", help="train several models the same way and compare them (table, charts, report.html)",
                       description="Train each model (and seed) with the same data, split and budget; write compare.md/csv/json, "
                       "charts and a self-contained report.html. Re-running the same command reuses finished runs and resumes "
                       "an unfinished one.")
    p.add_argument("--models", required=True, help="comma-separated model names, e.g. mlp,lenet5,cnn")
    _add_data_args(p)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="the same number of epochs for every model (default: each model's own)")
    budget.add_argument("--budget-seconds", type=float, help="the same wall-clock training budget for every model")
    p.add_argument("--seeds", type=int, default=1, help="runs per model; the table shows mean +- std")
    p.add_argument("--out", help="comparison folder (default runs/compare-DATASET-MODELS)")
    p.add_argument("--augment", help="none, light or strong (default: each model's own)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--val-split", type=float)
    p.add_argument("--threads", type=int)
    p.add_argument("--device")
    p.set_defaults(func=cmd_compare)


def _predict_parser(sub) -> None:
    """`digitlab predict [MODEL] INPUT...`."""
    p = sub.add_parser("predict", help="read digits on photos or scans (MNIST-style preprocessing)",
                       description="Predict on image files. Digit models get the photo cleaned up the way MNIST was made "
                       "(ink found, cropped, scaled to 20 px, centred by mass). Exit code 3 when some inputs failed.")
    p.add_argument("inputs", nargs="+", metavar="[MODEL] INPUT",
                   help="optionally first a run folder, .safetensors checkpoint or exported .onnx file (default: the reader "
                        "model that ships with digitlab), then image files, folders, globs or - for stdin")
    p.add_argument("--multi", action="store_true", help="the image holds a number written on one line: read every digit")
    p.add_argument("--top-k", type=int, default=3)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON list of results")
    fmt.add_argument("--csv", action="store_true", help="print CSV rows: input,label,prob,top_k,error")
    p.add_argument("--save-preprocessed", metavar="DIR", help="write the 28x28 images the model saw")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="onnx: run RUN/best.onnx with onnxruntime")
    p.set_defaults(func=cmd_predict)


def _export_parser(sub) -> None:
    """`digitlab export [MODEL]`."""
    p = sub.add_parser("export", help="export a model to ONNX for onnxruntime and other runtimes")
    p.add_argument("model", nargs="?", help="run folder or .safetensors checkpoint (default: the shipped reader, to ./reader.onnx or ./reader.int8.onnx)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="file format; onnx is the only one (default)")
    p.add_argument("--out", help="output file (default: beside the checkpoint, best.onnx; with --quantize int8, best.int8.onnx)")
    p.add_argument("--quantize", choices=("int8",), help="int8: ONNX Runtime static quantisation, calibrated on the "
                   "run's own training images (smaller file; see the README for its speed on your CPU)")
    p.add_argument("--calibration", type=int, metavar="N",
                   help="with --quantize: how many training images set the activation ranges (default 300)")
    p.add_argument("--data-root", help="with --quantize: folder holding the run's dataset (default: $DIGITLAB_DATA, then the download cache)")
    p.set_defaults(func=cmd_export)


def _serve_parser(sub) -> None:
    """`digitlab serve [MODEL ...]`."""
    p = sub.add_parser("serve", help="web page to draw digits + REST API (FastAPI)")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="run folders, checkpoints or .onnx files; the first is the default (none: the reader that ships with digitlab)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="1-65535, or 0 for any free port (default 8000)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads per worker (default 1)")
    p.add_argument("--workers", type=int, default=1, help="server processes (e.g. one per CPU core)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a request head or body may take to arrive (default 30)")
    p.add_argument("--corrections", metavar="DIR", help="keep the drawings users correct on the page in DIR (one sub-folder per "
                   "label), to fine-tune on: digitlab train --init-from MODEL --dataset folder:DIR (default: off)")
    p.add_argument("--corrections-cap", type=int, default=10_000, metavar="N", help="at most N corrections in DIR (default 10000)")
    p.add_argument("--reload", action="store_true", help="serve each model's newest checkpoint: re-load it when its file changes "
                   "(checked at most every 2 s, on requests)")
    p.set_defaults(func=cmd_serve)


def _inspect_parser(sub) -> None:
    """`digitlab inspect [MODEL] IMAGE`."""
    p = sub.add_parser("inspect", help="feature maps of every conv layer and the first-layer filters, as PNGs")
    p.add_argument("inputs", nargs="+", metavar="[MODEL] IMAGE",
                   help="optionally a run folder or checkpoint (default: the shipped reader), then a photo or scan of a digit")
    p.add_argument("--out", default="inspect", help="folder for the pictures (default ./inspect)")
    p.set_defaults(func=cmd_inspect)


def _data_parser(sub) -> None:
    """`digitlab data list|show`."""
    data = sub.add_parser("data", help="list datasets or show one").add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    p = data.add_parser("list", help="the datasets digitlab knows")
    p.set_defaults(func=cmd_data_list)
    p = data.add_parser("show", help="counts, shapes, classes, files and a sample grid")
    p.add_argument("name")
    p.add_argument("--data-root")
    p.add_argument("--image-size", type=int, help="for folder datasets")
    p.add_argument("--out", help="PNG path for the sample grid (default NAME-samples.png)")
    p.set_defaults(func=cmd_data_show)


def _models_parser(sub) -> None:
    """`digitlab models list|summary`."""
    models = sub.add_parser("models", help="list models or summarise one").add_subparsers(dest="models_command", required=True, metavar="SUBCOMMAND")
    p = models.add_parser("list", help="every model with its parameter count on MNIST")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("summary", help="Keras-style layer table, parameters, multiply-adds and memory")
    p.add_argument("name")
    p.add_argument("--dataset", help="take the input shape and classes from a dataset (default mnist)")
    p.add_argument("--input-shape", help="C,H,W, e.g. 3,32,32")
    p.add_argument("--num-classes", type=int)
    p.set_defaults(func=cmd_models_summary)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="digitlab", description="Train, compare, inspect and serve image classifiers for digits and small images.")
    parser.add_argument("--version", action="version", version=f"digitlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    _evaluate_parser(sub)
    _compare_parser(sub)
    _predict_parser(sub)
    _export_parser(sub)
    _serve_parser(sub)
    _inspect_parser(sub)
    _data_parser(sub)
    _models_parser(sub)
    return parser


# file-system faults that are the user's to fix (a full disk while plots are written, a read-only or foreign folder)
USER_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST)


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user mistake is one line on stderr and exit code 2, never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # OpenMP threads that spin while they wait (GNU OpenMP's default) starve each other and every other process when
    # the CPUs are shared: measured 2-3 vs 65-90 steps/s (2 threads, 2 busy cores). Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) or a bad flag (2, already printed)
        return e.code if isinstance(e.code, int) else USAGE_ERROR
    args.argv = argv
    try:
        return args.func(args)
    except DigitlabError as e:
        print(f"digitlab: error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as e:
        if e.errno not in USER_OS_ERRORS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(f"digitlab: error: {e.strerror or e}{where}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("digitlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except MemoryError:
        print("digitlab: error: out of memory; try a smaller --batch-size or --image-size", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
