"""``mailtriage classifier train`` / ``eval`` the way an admin runs them."""

from __future__ import annotations

from classifier.model import TextModel
from classifier.training import load_csv
from mailtriage.cli import main
from tests.conftest import ENDAVA_SAMPLE


def test_train_then_eval_on_a_sample_of_endava(tmp_path, capsys) -> None:
    train_csv = ENDAVA_SAMPLE / "train_sample.csv"
    test_csv = ENDAVA_SAMPLE / "test_sample.csv"
    out = tmp_path / "model.pkl"
    assert (
        main(
            [
                "--config",
                str(tmp_path / "none.toml"),
                "classifier",
                "train",
                str(train_csv),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr()
    assert f"training on {len(load_csv(train_csv).labels)} rows, 8 categories" in printed.out
    assert "calibration" in printed.err  # the progress bar's last step
    assert len(TextModel.load(out).classes) == 8

    assert (
        main(
            [
                "--config",
                str(tmp_path / "none.toml"),
                "classifier",
                "eval",
                str(test_csv),
                "--model",
                str(out),
            ]
        )
        == 0
    )
    report = capsys.readouterr().out
    for part in ("accuracy", "macro-F1", "tickets/s", "per class:", "confusion matrix", "Hardware"):
        assert part in report
    f1 = float(next(line for line in report.splitlines() if line.startswith("macro-F1")).split()[1])
    assert f1 > 0.55


def test_train_on_the_default_corpus_into_the_configured_model_path(site, capsys) -> None:
    config = site / "mailtriage.toml"
    text = config.read_text()
    config.write_text(
        text.replace("[classifier]", '[classifier]\nmodel_path = "var/custom.pkl"', 1)
    )
    assert main(["--config", str(config), "classifier", "train"]) == 0
    assert (site / "var" / "custom.pkl").exists()
    assert "720 rows" in capsys.readouterr().out


def test_bad_input_is_one_line(tmp_path, capsys) -> None:
    nolabel = tmp_path / "x.csv"
    nolabel.write_text("text,foo\nhello,1\n")
    cfg = ["--config", str(tmp_path / "none.toml")]
    assert main([*cfg, "classifier", "train", str(nolabel), "--out", str(tmp_path / "m.pkl")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"mailtriage: error: {nolabel}: no label column; expected one of category, label, topic_group, queue or --label-column"
    ]
    assert main([*cfg, "classifier", "eval", str(tmp_path / "missing.csv")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main([*cfg, "classifier", "train", str(nolabel)]) == 1
    assert "--out" in capsys.readouterr().err


def test_from_corrections_adds_what_agents_fixed(site, capsys, make_app, inbox) -> None:
    from sqlalchemy import select

    from daemon.store.models import CategoryCorrection, Ticket
    from tests.support.mail import make_mail

    app = make_app()
    inbox(make_mail(subject="Door", body="the badge reader at the door beeps red"), "m1")
    app.runner.run_pass()
    with app.factory() as session, session.begin():
        ticket = session.scalars(select(Ticket)).one()
        for _ in range(4):
            session.add(
                CategoryCorrection(
                    ticket_id=ticket.id,
                    text="the badge reader at the door beeps red",
                    old_category=ticket.category,
                    new_category="security",
                    actor="agent@example.com",
                    at=ticket.created_at,
                )
            )
    app.close()
    out = site / "var" / "fixed.pkl"
    config = ["--config", str(site / "mailtriage.toml")]
    assert main([*config, "classifier", "train", "--from-corrections", "--out", str(out)]) == 0
    assert "added 4 agent corrections" in capsys.readouterr().err
    assert TextModel.load(out).predict(["badge reader at the door beeps red"]) == ["security"]
