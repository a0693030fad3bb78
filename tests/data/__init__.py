"""Tests of tinyr1.data (a package so its test module names cannot clash with other folders')."""
