"""Rules: strict YAML rule files, the per-series engine, hot reload, backtests.

Public surface: :func:`hub.rules.loader.load_rules` and ``check_command``,
:class:`hub.rules.engine.RuleEngine`, :class:`hub.rules.service.RuleService`,
:func:`hub.rules.backtest.backtest` and ``backtest_command``.
"""
