"""PromptWizard's identity: the thinking styles and the meta prompts it sends to the reflector.

These texts *are* the optimizer — changing one changes what it proposes — so they live here as
module-level constants, versioned with the code. They paraphrase the templates of the reference
implementation (microsoft/PromptWizard, ``critique_n_refine`` prompt pool) and the thinking-style
list PromptWizard shares with Promptbreeder, shortened so that a small local reflection model can
follow them: one request per reply, explicit ``<tag>…</tag>`` markers, the full new text asked for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tunegate.core.example import Example
from tunegate.core.prompt import FewShot, PromptTemplate
from tunegate.tuning.reflection import Parser

__all__ = [
    "CRITIQUE_PROMPT",
    "EXAMPLES_CRITIQUE_PROMPT",
    "EXAMPLES_SELECT_PROMPT",
    "EXAMPLES_SYNTH_PROMPT",
    "EXPERT_PROMPT",
    "INTENT_PROMPT",
    "MUTATE_PROMPT",
    "POSITIVE_CRITIQUE_PROMPT",
    "REASONING_PROMPT",
    "REFINE_PROMPT",
    "THINKING_STYLES",
    "Shown",
    "answer_text",
    "clip",
    "current",
    "demo_of",
    "examples_block",
    "parse_examples",
    "parse_indices",
    "task_block",
]

#: (name, text) of the thinking styles mutations mix in: PromptWizard's pool (the Promptbreeder /
#: Self-Discover reasoning modules) plus zero-shot CoT, shortened. The name becomes the operator
#: ``style:<name>`` in the history.
THINKING_STYLES: tuple[tuple[str, str], ...] = (
    ("step_by_step", "Let's think step by step."),
    ("simplify", "How can I simplify the problem so that it is easier to solve?"),
    ("assumptions", "What are the key assumptions underlying this problem?"),
    ("decompose", "How can I break down this problem into smaller, more manageable parts?"),
    ("critical", "Critical thinking: analyse the problem from different perspectives, question assumptions, "
                 "and evaluate the evidence available, looking for flaws in the reasoning."),
    ("experiment", "How could I devise an experiment to help solve that problem?"),
    ("ideas_list", "Make a list of ideas for solving this problem, and apply them one by one to see if any "
                   "progress can be made."),
    ("measure", "How could I measure progress on this problem?"),
    ("risks", "What are the potential risks and drawbacks of each solution?"),
    ("perspectives", "What are the alternative perspectives or viewpoints on this problem?"),
    ("core_issue", "What is the core issue or problem that needs to be addressed?"),
    ("causes", "What are the underlying causes or factors contributing to the problem?"),
    ("creative", "Creative thinking: generate innovative, out-of-the-box ideas and unconventional solutions."),
    ("systems", "Systems thinking: treat the problem as part of a larger system of interconnected elements."),
    ("reflective", "Reflective thinking: step back, examine your own biases and assumptions, and learn from "
                   "past mistakes."),
    ("plan", "Let's make a step by step plan and carry it out carefully, checking each step."),
)

MUTATE_PROMPT = """You improve instructions for an AI assistant.
{task}
Current instruction:
<current>
{instruction}
</current>

Thinking style: {style}

Rewrite the instruction so that it guides the assistant to solve the same task using this thinking style. Keep every requirement of the current instruction (answer format, constraints){keep}.
Write the complete new instruction between <instruction> and </instruction>."""

CRITIQUE_PROMPT = """You review an instruction given to an AI assistant.
{task}
Instruction:
<current>
{instruction}
</current>

With this instruction the assistant got these examples wrong:
{examples}

Explain briefly what is wrong or missing in the instruction that caused these mistakes. Do not write a new instruction.
Put your critique between <critique> and </critique>."""

POSITIVE_CRITIQUE_PROMPT = """You review an instruction given to an AI assistant.
{task}
Instruction:
<current>
{instruction}
</current>

With this instruction the assistant got these examples right:
{examples}

Explain briefly what in the instruction could still be clearer, more specific or more robust. Do not write a new instruction.
Put your critique between <critique> and </critique>."""

REFINE_PROMPT = """You improve instructions for an AI assistant.
{task}
Current instruction:
<current>
{instruction}
</current>

Examples:
{examples}

Critique of the current instruction:
{critique}

Write an improved instruction that fixes the problems named in the critique. It must be a complete instruction for the same task{keep}.
Put it between <instruction> and </instruction>."""

EXAMPLES_CRITIQUE_PROMPT = """You choose demonstration examples shown to an AI assistant together with this instruction:
<current>
{instruction}
</current>
{task}
Current demonstrations:
{examples}

Explain briefly what makes these demonstrations good or poor for the task, and what kind of example is missing.
Put your critique between <critique> and </critique>."""

EXAMPLES_SYNTH_PROMPT = """You write demonstration examples for an AI assistant that follows this instruction:
<current>
{instruction}
</current>
{task}
Current demonstrations:
{examples}

Critique of the current demonstrations:
{critique}

A real example of the task, for format:
Input: {gt_input}
Output: {gt_output}

Write {n} new examples that address the critique, in the same format as the real example, each with a correct output. Format each one as:
<example><input>the input</input><output>the correct output</output></example>"""

EXAMPLES_SELECT_PROMPT = """You choose demonstration examples shown to an AI assistant together with this instruction:
<current>
{instruction}
</current>
{task}
Candidate examples:
{examples}

Critique of the demonstrations used so far:
{critique}

Choose the {n} candidates that make the best demonstrations, taking the critique into account.
Write their numbers, separated by commas, between <choice> and </choice>."""

REASONING_PROMPT = """An AI assistant follows this instruction:
<current>
{instruction}
</current>

Input: {input}
Correct answer: {answer}

Explain briefly, step by step, how to arrive at the correct answer from the input.
Put the explanation between <reasoning> and </reasoning>."""

EXPERT_PROMPT = """Describe, in one or two sentences starting with "You are", the expert best suited to carry out this task:
{task_text}

Put the description between <identity> and </identity>."""

INTENT_PROMPT = """List up to five keywords that describe the intent of this task:
{task_text}

Write them comma-separated between <keywords> and </keywords>."""

#: Characters of each field shown per example in a reflection prompt (keeps it under ~1,500 tokens).
CLIP = 400


def clip(text: str, n: int = CLIP) -> str:
    """``text`` cut to ``n`` characters with a visible marker (never silently)."""
    text = text.strip()
    return text if len(text) <= n else text[:n].rstrip() + " […]"


def task_block(description: str) -> str:
    """The optional user-given task description, as a paragraph of a meta prompt."""
    return f"\nTask description: {description.strip()}\n" if description.strip() else ""


@dataclass(frozen=True)
class Shown:
    """One example as shown to the reflector: the row's input, the model's reply, the gold answer."""

    input: str
    expected: str
    output: str | None = None
    feedback: str | None = None


def examples_block(items: list[Shown], *, numbered: bool = False) -> str:
    """Examples rendered for a meta prompt, each field clipped."""
    parts = []
    for i, s in enumerate(items, 1):
        lines = [f"[{i}]" if numbered else f"Example {i}:", f"Input: {clip(s.input)}"]
        if s.output is not None:
            lines.append(f"Assistant's answer: {clip(s.output, 300)}")
        lines.append(f"Expected answer: {clip(s.expected, 300)}")
        if s.feedback:
            lines.append(f"Evaluator feedback: {clip(s.feedback, 300)}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def answer_text(value: Any) -> str:
    """A gold answer as text (JSON for structured ones; a marker when the row has none)."""
    if value is None:
        return "(no reference answer)"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def current(instruction: str) -> str:
    """The instruction as placed in a meta prompt (a seed may have none yet)."""
    return instruction.strip() or "(no instruction yet)"


def demo_of(prompt: PromptTemplate, ex: Example, output: str | None = None) -> FewShot | None:
    """A demonstration built from a *train* row: the user turn as the prompt renders it, the gold answer.

    The user turn is rendered without the prompt's own demonstrations (the last user message), so
    context blocks and schema notes read exactly as the model sees them on a real row. Rows without
    a gold answer can only demonstrate a reply that already scored well (``output``); rows whose
    answer is a tool call cannot be shown as a text demonstration and give None.
    """
    gold = ex.expected
    if isinstance(gold, list) and gold and all(isinstance(x, str) for x in gold):
        gold = gold[0]  # several accepted references: demonstrate the first
    if gold is not None:
        answer = answer_text(gold)
    elif output is not None:
        answer = output
    else:
        return None
    msgs = prompt.model_copy(update={"few_shot": []}).render(ex)
    user = next((m.content for m in reversed(msgs) if m.role == "user" and m.content), None)
    if not user or not answer.strip():
        return None
    return FewShot(input=user, output=answer)


_EXAMPLE = re.compile(r"<example>(.*?)</example>", re.DOTALL | re.IGNORECASE)
_FIELD = {k: re.compile(rf"<{k}>(.*?)</{k}>", re.DOTALL | re.IGNORECASE) for k in ("input", "output")}


def parse_examples(text: str) -> list[FewShot]:
    """Complete ``<example><input>…</input><output>…</output></example>`` blocks; ValueError if none."""
    out = []
    for block in _EXAMPLE.findall(text):
        got = {k: p.findall(block) for k, p in _FIELD.items()}
        if got["input"] and got["output"] and got["input"][0].strip() and got["output"][0].strip():
            out.append(FewShot(input=got["input"][0].strip(), output=got["output"][0].strip()))
    if not out:
        if re.search(r"<example>", text, re.IGNORECASE):
            raise ValueError("no complete <example> with non-empty <input> and <output>")
        raise ValueError("no <example>…</example> block in the reply")
    return out


def parse_indices(n_candidates: int, want: int) -> Parser:
    """Parser for ``<choice>2, 5, 1</choice>``: distinct 1-based indices in range, at least one."""
    pat = re.compile(r"<choice>(.*?)</choice>", re.DOTALL | re.IGNORECASE)

    def parse(text: str) -> list[str]:
        found = pat.findall(text)
        if not found:
            raise ValueError("no <choice>…</choice> block in the reply")
        nums = [int(x) for x in re.findall(r"\d+", found[-1])]
        bad = [x for x in nums if not 1 <= x <= n_candidates]
        if bad:
            raise ValueError(f"choice {bad} out of range 1..{n_candidates}")
        picked = list(dict.fromkeys(nums))[:want]
        if not picked:
            raise ValueError("empty <choice>")
        return [str(x) for x in picked]
    return parse
