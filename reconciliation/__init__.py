"""Reconciliation with Balance: the checks' registry, the loading stages, recording, fixing, and the mismatch
queue with support's actions. It sits on top of the domain apps (it reads them all) and nothing below imports it.
"""
