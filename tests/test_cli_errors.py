"""Usage errors as a user meets them: one line, in the user's words, naming where help is."""

from __future__ import annotations

import pytest

from petwatch import cli


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["search", "dog.jpg", "--top-k", "abc"], "--top-k must be a whole number from 1 to 1000, not 'abc'"),
        (["search", "dog.jpg", "--top-k", "0"], "--top-k must be a whole number from 1 to 1000, not '0'"),
        (["search", "dog.jpg", "--top-k", "-5"], "--top-k must be a whole number from 1 to 1000, not '-5'"),
        (["search", "dog.jpg", "--top-k", "100000"], "--top-k must be a whole number from 1 to 1000"),
        (["search", "dog.jpg", "--min-score", "high"], "--min-score must be a number from -1 to 1, not 'high'"),
        (["comic", "--prompt", "x", "--pet-photos", "99"], "--pet-photos must be a whole number from 1 to 16"),
        (["pets", "show", "Rex", "--top", "x"], "--top must be a whole number, at least 1, not 'x'"),
        (["search", "--top-k", "0"], "--top-k must be a whole number from 1 to 1000, not '0'"),
    ],
)
def test_a_bad_argument_is_one_line_in_the_users_words(argv, said, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # no usage dump before the reason
    assert said in err and "_top_k" not in err and "invalid int value" not in err
    assert f"(see `petwatch {argv[0]}" in err
