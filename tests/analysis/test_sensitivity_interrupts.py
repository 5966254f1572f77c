"""Ctrl-C during a sensitivity: its runs stop, and a deferred interrupt is not lost."""
import pytest


def test_a_deferred_interrupt_is_raised_while_sensitivity_waits_for_a_run():
    """An interrupt deferred (it arrived while the main thread was in code it must not be
    raised in) is raised while sensitivity waits for its runs, not after all of them."""
    from concurrent.futures import Future

    from forecaster.analysis.sensitivity import _result
    from forecaster.results.files import _Interrupts

    never = Future()  # a run that is still going
    _Interrupts.pending = KeyboardInterrupt()
    try:
        with pytest.raises(KeyboardInterrupt):
            _result(never)
    finally:
        _Interrupts.pending = None
