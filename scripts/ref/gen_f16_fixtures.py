#!/usr/bin/env python3
"""float16 reference fixtures for the FP16 mode (`--dtype f16`), next to the f32/bf16 ones.

Runs the committed tiny checkpoints (tests/fixtures/models, written by gen_model_fixtures.py)
through transformers with `from_pretrained(dtype=torch.float16, attn_implementation="eager")`
on the same five prompt cases, and writes

  tests/fixtures/cases/<model>__<case>__f16.safetensors   input_ids, logits [seq, vocab] f32, generated [6]
  tests/fixtures/cases/manifest_f16.json                  versions, sha256, and per case torch's
                                                           own f16-vs-f32 logits gap

The gap is computed against a float32 run of the same checkpoint and the same inputs (the
`__f32` fixtures hold the same logits); the Rust parity test recomputes it from those fixtures
and bounds our f16 error by twice it. Run after gen_model_fixtures.py (which rewrites the
cases folder); it never touches the f32/bf16 files. Deterministic like the main generator
(fixed inputs, CPU, one thread).
"""

import argparse
import hashlib
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model_fixtures as g  # noqa: E402  (same folder; shares configs, cases and the runner)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(g.REPO, "tests", "fixtures"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    models_dir = os.path.join(args.out, "models")
    cases_dir = os.path.join(args.out, "cases")
    cases = g.build_cases()
    manifest = {
        "generator": "scripts/ref/gen_f16_fixtures.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "torch_num_threads": 1,
        "attn_implementation": "eager",
        "dtype": "float16",
        "files": [],
        "gap": {},
    }
    print(f"torch {torch.__version__}  transformers {transformers.__version__}")
    for mname, (_, model_cls, _, _, _) in g.MODELS.items():
        mdir = os.path.join(models_dir, mname)
        f16 = g.load_ref(mdir, model_cls, torch.float16)
        f32 = g.load_ref(mdir, model_cls, torch.float32)
        for cname, c in cases.items():
            r = g.run_case(f16, c, False)
            assert r["generated"].tolist() == r["_nocache_greedy"], (mname, cname)
            f32.model.rope_deltas = None
            with torch.no_grad():
                l32 = f32(**g.model_inputs(c), use_cache=False).logits[0].float()
            l16 = r["logits"]
            assert torch.isfinite(l16).all(), (mname, cname)
            # input_ids identify the case (the Rust loader wants them); pixels stay in the f32 file
            tensors = {"input_ids": c["input_ids"].clone(), "logits": l16.contiguous(), "generated": r["generated"]}
            fn = f"{mname}__{cname}__f16.safetensors"
            path = os.path.join(cases_dir, fn)
            meta = {"model": mname, "case": cname, "dtype": "f16", "torch": torch.__version__,
                    "transformers": transformers.__version__}
            save_file(tensors, path, metadata={"fixture": json.dumps(meta, sort_keys=True)})
            with open(path, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
            manifest["files"].append({"file": f"tests/fixtures/cases/{fn}", "bytes": os.path.getsize(path),
                                      "sha256": sha})
            gap = {
                "max_abs_f16_vs_f32": float((l16 - l32).abs().max()),
                "mean_abs_f16_vs_f32": float((l16 - l32).abs().mean()),
                "argmax_agree_f16_f32": float((l16.argmax(-1) == l32.argmax(-1)).float().mean()),
                "generated_f16": r["generated"].tolist(),
            }
            manifest["gap"][f"{mname}__{cname}"] = gap
            print(f"  {mname:12s} {cname:7s} " + " ".join(f"{k}={v}" for k, v in gap.items()))

    with open(os.path.join(cases_dir, "manifest_f16.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
