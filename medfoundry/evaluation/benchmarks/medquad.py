"""MedQuAD consumer health QA, one XML document per focus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

from medfoundry.evaluation.benchmarks.base import Benchmark, EvalItem, Skipped, _line_of, _text, register


def _xml_line(raw: str, needle: str) -> int | None:
    offset = raw.find(needle)
    return _line_of(raw, offset) if offset >= 0 else None


@register
class MedQuAD(Benchmark):
    name = "medquad"
    folder = "medquad"
    patterns = ("**/*.xml",)
    main_metric = "rouge_l"
    description = "MedQuAD consumer health QA; one XML document per focus with QAPairs (answers scored by ROUGE-L)"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        raw = path.read_text(encoding="utf-8", errors="replace")
        try:
            root = ElementTree.fromstring(raw)
        except ElementTree.ParseError as err:
            yield Skipped(str(path), err.position[0], f"invalid XML: {err}")
            return
        focus = (root.findtext("Focus") or "").strip()
        for pair in root.iter("QAPair"):
            question_el = pair.find("Question")
            qid = question_el.get("qid") if question_el is not None else None
            line = _xml_line(raw, f'qid="{qid}"') if qid else _xml_line(raw, f'pid="{pair.get("pid")}"')
            question = _text(question_el.text if question_el is not None else None)
            answer = _text(pair.findtext("Answer"))
            if question is None or answer is None:
                yield Skipped(str(path), line, f"QAPair {qid or pair.get('pid')}: missing question or answer text")
                continue
            yield EvalItem(
                id=qid or f"{root.get('id', path.stem)}-{pair.get('pid')}",
                benchmark=self.name,
                task="long_answer",
                question=question,
                answer=" ".join(answer.split()),
                meta={"focus": focus, "qtype": question_el.get("qtype"), "source": root.get("source")},
                source=f"{path}:{line}",
            )
