"""The Chinese edition kept in step with the English (labnotes/site/i18n.py): every English block
has a current translation, a changed English sentence makes its translation stale (and the build
fail, naming page and block), the glossary's mistranslations appear on no page."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import markdown
import pytest

from labnotes.cli import main
from labnotes.site import i18n
from labnotes.site.literate import read_page

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
CJK = re.compile(r"[\u4e00-\u9fff]")


# --------------------------------------------------------------------------- the real site


def test_every_english_block_has_a_current_chinese_translation():
    problems = i18n.check(ROOT, "zh")
    assert not problems, "\n".join(map(str, problems)) + "\n(`labnotes translations` lists the same)"


def test_every_results_table_has_chinese_headings_and_captions():
    problems = i18n.table_problems(ROOT, "zh", ROOT / "docs" / "results")
    assert not problems, "\n".join(map(str, problems))


def test_no_chinese_page_uses_a_mistranslation():
    assert i18n.mistranslations_used(ROOT, "zh") == []


def test_the_mistranslation_check_can_fail(tmp_path):
    folder = tmp_path / "translations" / "zh"
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "translations" / "zh" / "glossary.toml", folder)
    (folder / "mlm.md").write_text("<!-- en: title 0123456789 -->\n# 传销语言模型\n", encoding="utf-8")
    found = i18n.mistranslations_used(tmp_path, "zh")
    assert len(found) == 1 and "mlm.md:2" in found[0] and "传销" in found[0]


def test_glossary_entries_are_complete_and_link_to_sections_that_exist():
    glossary = tomllib.loads((ROOT / "translations" / "zh" / "glossary.toml").read_text(encoding="utf-8"))
    sources = {source.name: source for source in i18n.english_sources(ROOT / "labnotes", ROOT / "docs")}
    assert len(glossary["term"]) >= 40
    for term in glossary["term"]:
        for key in ("en", "zh", "en_definition", "zh_definition"):
            assert term.get(key, "").strip(), f"{term.get('en')}: no {key}"
        assert CJK.search(term["zh"]) or term["zh"] == term["en"], term
        if "link" in term:
            page, _, anchor = term["link"].partition("#")
            assert page in sources, f"{term['en']}: {term['link']} is no page"
            if anchor:
                assert sources[page].block(anchor) is not None, f"{term['en']}: no section #{anchor} on {page}"
    wrong = {entry["wrong"] for entry in glossary["mistranslation"]}
    assert {"传销", "变压器", "令牌", "代币", "蒙面"} <= wrong
    for entry in glossary["mistranslation"]:
        assert all(entry.get(key, "").strip() for key in ("en", "wrong", "right", "why_en", "why_zh")), entry


def test_translations_keep_the_code_formulas_and_links_of_the_english():
    """Links and inline code are not translated: each block links the same targets as its English."""
    mismatched = []
    for source in i18n.english_sources(ROOT / "labnotes", ROOT / "docs"):
        translation = i18n.read_translation(ROOT / "translations" / "zh" / source.name)
        for block in source.blocks:
            text = translation.blocks[block.key][1].text
            english_links = sorted(re.findall(r"\]\(([^)\s]+)\)", block.text))
            chinese_links = sorted(re.findall(r"\]\(([^)\s]+)\)", text))
            if english_links != chinese_links:
                mismatched.append(f"{source.name} #{block.key}: links {english_links} became {chinese_links}")
    assert not mismatched, "\n".join(mismatched)


def test_chinese_prose_uses_full_width_punctuation_and_is_chinese():
    for source in i18n.english_sources(ROOT / "labnotes", ROOT / "docs"):
        translation = i18n.read_translation(ROOT / "translations" / "zh" / source.name)
        title_block = translation.blocks[source.blocks[0].key][1].text
        assert CJK.search(title_block), f"{source.name}: its first block is not in Chinese"
        prose = re.sub(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\([^)]*\)|<[^>]+>", "",
                       "\n".join(block.text for _, block in translation.blocks.values()), flags=re.S)
        # a Chinese character directly followed by a half-width comma or full stop is a slip
        slips = re.findall(r"[\u4e00-\u9fff][,;](?=\s|$)|[\u4e00-\u9fff]\.(?=\s|$)", prose)
        assert len(slips) <= 2, f"{source.name}: half-width punctuation after Chinese text: {slips[:5]}"


# --------------------------------------------------------------------------- the check itself


def _toy(tmp_path: Path) -> tuple[Path, i18n.Source]:
    """A copy of the fixture's toy paper page and a complete translation of it."""
    page = read_page(FIXTURES / "toypkg" / "toypaper.py", "toypaper")
    source = i18n.literate_source(page)
    folder = tmp_path / "translations" / "zh"
    folder.mkdir(parents=True)
    blocks = []
    for block in source.blocks:
        head = f"{'#' * block.heading_level} 中文标题\n\n" if block.heading_level else ""
        markers = "\n".join(i18n.MARKERS_KEPT.findall(block.text))
        formulas = "\n\n$$x$$\n" * (block.text.count("$$") // 2)
        blocks.append(f"<!-- en: {block.key} {block.hash} -->\n{head}中文的说明。\n{markers}{formulas}")
    (folder / "toypaper.md").write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return folder / "toypaper.md", source


def _problems(tmp_path: Path, source: i18n.Source) -> list[str]:
    return [str(problem) for problem in i18n.check(tmp_path, "zh", [source])]


def test_a_complete_translation_has_no_problems(tmp_path):
    _, source = _toy(tmp_path)
    assert _problems(tmp_path, source) == []


def test_a_changed_english_sentence_makes_exactly_its_block_stale(tmp_path):
    path, source = _toy(tmp_path)
    changed = source.blocks[2]
    edited = i18n.Source(source.name, source.path, tuple(
        i18n.Block(block.key, block.text.replace(".", ";", 1) if block is changed else block.text,
                   block.heading_level, block.line) for block in source.blocks))
    problems = _problems(tmp_path, edited)
    assert len(problems) == 1
    assert f"block {changed.key!r}" in problems[0] and "stale" in problems[0]
    assert "translations/zh/toypaper.md" in problems[0] and f"labnotes translations stamp toypaper.md {changed.key}" in problems[0]
    # after the translator has checked it, stamping records the new English
    i18n.stamp(path, changed.key, edited.block(changed.key).hash)
    assert _problems(tmp_path, edited) == []


def test_missing_untranslated_extra_and_malformed_blocks_are_reported(tmp_path):
    path, source = _toy(tmp_path)
    text = path.read_text(encoding="utf-8")
    first, second = source.blocks[1], source.blocks[2]
    # the second block dropped, the first left untranslated, a block for a removed section added
    text = re.sub(rf"<!-- en: {second.key} \w+ -->\n.*?(?=<!-- en:|\Z)", "", text, flags=re.S)
    text = text.replace(f"<!-- en: {first.key} {first.hash} -->\n",
                        f"<!-- en: {first.key} {first.hash} -->\n{i18n.TODO}\n")
    text += "\n<!-- en: gone-section 0123456789 -->\n旧的。\n"
    path.write_text(text, encoding="utf-8")
    problems = "\n".join(_problems(tmp_path, source))
    assert f"block {second.key!r}" in problems and "has no translation" in problems
    assert f"block {first.key!r}" in problems and "not translated yet" in problems
    assert "'gone-section' translates nothing" in problems
    path.unlink()
    assert "translations/zh/toypaper.md is missing" in "\n".join(_problems(tmp_path, source))


def test_headings_markers_and_formulas_must_match_the_english(tmp_path):
    path, source = _toy(tmp_path)
    with_heading = next(block for block in source.blocks[1:] if block.heading_level)
    with_marker = next((block for block in source.blocks if i18n.MARKERS_KEPT.search(block.text)), None)
    text = path.read_text(encoding="utf-8")
    text = text.replace(f"<!-- en: {with_heading.key} {with_heading.hash} -->\n{'#' * with_heading.heading_level} ",
                        f"<!-- en: {with_heading.key} {with_heading.hash} -->\n#### ")
    if with_marker is not None:
        text = text.replace(i18n.MARKERS_KEPT.search(with_marker.text).group(0), "")
    path.write_text(text, encoding="utf-8")
    problems = "\n".join(_problems(tmp_path, source))
    assert f"block {with_heading.key!r}" in problems and "level-" in problems
    if with_marker is not None:
        assert "build markers" in problems


def test_a_translation_file_with_text_before_its_first_block_is_refused(tmp_path):
    path = tmp_path / "x.md"
    path.write_text("stray text\n<!-- en: title 0123456789 -->\n# 标题\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.md:1: text before the first block marker"):
        i18n.read_translation(path)
    path.write_text("<!-- en: a 0123456789 -->\n一\n<!-- en: a 0123456789 -->\n二\n", encoding="utf-8")
    with pytest.raises(ValueError, match="appears twice"):
        i18n.read_translation(path)


def test_skeleton_keeps_translations_and_adds_the_english_of_missing_blocks(tmp_path):
    path, source = _toy(tmp_path)
    dropped = source.blocks[-1]
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index(f"<!-- en: {dropped.key} ")], encoding="utf-8")
    result = i18n.skeleton(source, i18n.read_translation(path))
    assert result.count("中文的说明") == len(source.blocks) - 1
    assert f"<!-- en: {dropped.key} {dropped.hash} -->\n{i18n.TODO}\n{dropped.text}" in result


def test_the_build_refuses_a_stale_translation_naming_page_and_block(tmp_path):
    shutil.copytree(ROOT / "translations", tmp_path / "translations")
    path = tmp_path / "translations" / "zh" / "mlm.md"
    key = i18n.literate_source(read_page(ROOT / "labnotes" / "mlm.py", "mlm")).blocks[3].key
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(rf"(<!-- en: {re.escape(key)} )\w+", r"\g<1>0000000000", text), encoding="utf-8")
    with pytest.raises(i18n.TranslationError) as error:
        i18n.Localization.load(tmp_path, "zh", ROOT / "labnotes", ROOT / "docs", ROOT / "docs" / "results")
    assert "translations/zh/mlm.md" in str(error.value) and f"block {key!r}" in str(error.value)
    assert "stale" in str(error.value) and "1 problems" in str(error.value)


def test_command_lists_problems_and_exits_1_and_is_quiet_when_current(tmp_path, capsys):
    assert main(["translations", "--root", str(ROOT)]) == 0
    assert "0 problems" in capsys.readouterr().err
    for name in ("labnotes", "docs"):
        (tmp_path / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "translations", tmp_path / "translations")
    (tmp_path / "translations" / "zh" / "sop.md").unlink()
    assert main(["translations", "--root", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "translations/zh/sop.md is missing" in captured.out and "1 problems" in captured.err
    assert main(["translations", "skeleton", "sop", "--root", str(tmp_path), "--write"]) == 0
    assert i18n.TODO in (tmp_path / "translations" / "zh" / "sop.md").read_text(encoding="utf-8")
    assert main(["translations", "--lang", "fr", "--root", str(tmp_path)]) == 1
    assert "no language 'fr'" in capsys.readouterr().err


# --------------------------------------------------------------------------- pieces


def test_hand_written_blocks_are_keyed_by_the_anchors_markdown_gives_their_headings():
    for path in sorted((ROOT / "docs").glob("*.md")):
        _, blocks = i18n.split_markdown(path.read_text(encoding="utf-8"))
        html = markdown.markdown(path.read_text(encoding="utf-8").split("---", 2)[-1],
                                 extensions=["toc", "attr_list", "fenced_code"])
        ids = re.findall(r'<h[1-3] id="([^"]+)"', html)
        assert [block.key for block in blocks if block.heading_level] == ids, path.name


def test_translated_headings_keep_the_english_anchors():
    language = i18n.Localization.load(ROOT, "zh")
    source = i18n.markdown_source(ROOT / "docs" / "how-to-read.md")
    title, text = language.markdown_page(source)
    assert CJK.search(title)
    for block in source.blocks:
        if block.heading_level:
            assert re.search(rf"^#{{{block.heading_level}}} .*\{{#{re.escape(block.key)}\}}$", text, re.M), block.key


def test_results_tables_translate_headings_and_captions_and_refuse_unknown_ones():
    table = "**Caption** (800 steps)\n\n| run | loss |\n|---|---|\n| baseline | 1.0 |\n| BERT | 0.5 |"
    phrases = {"**Caption** (800 steps)": "**标题**（800 步）", "run": "运行", "loss": "损失", "baseline": "基线"}
    assert i18n.translate_table(table, phrases) == \
        "**标题**（800 步）\n\n| 运行 | 损失 |\n|---|---|\n| 基线 | 1.0 |\n| BERT | 0.5 |"
    with pytest.raises(ValueError, match="table heading 'loss'"):
        i18n.translate_table(table, {key: value for key, value in phrases.items() if key != "loss"}, "t.md")
    with pytest.raises(ValueError, match="caption"):
        i18n.translate_table(table, {key: value for key, value in phrases.items() if "Caption" not in key})
    assert [text for text, required in i18n.table_phrases(table) if required] == \
        ["**Caption** (800 steps)", "run", "loss"]


def test_text_hash_ignores_trailing_spaces_and_surrounding_blank_lines_only():
    assert i18n.text_hash("a\nb") == i18n.text_hash("\n\na  \nb\n\n")
    assert i18n.text_hash("a\nb") != i18n.text_hash("a\nb.")
    assert i18n.text_hash("a b") != i18n.text_hash("a  b")


def test_chinese_lines_of_a_paragraph_are_joined_without_a_space_but_code_is_kept():
    text = "第一行，\n第二行。\nEnglish line\n中文\n- 列表\n```\n代码\n行\n```\n"
    assert i18n.join_cjk_lines(text) == "第一行，第二行。\nEnglish line\n中文\n- 列表\n```\n代码\n行\n```\n"
