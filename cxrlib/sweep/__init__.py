"""Search over preprocessing settings and shortcut remedies, chosen without the test split
(issue 23): :mod:`.space` (what a sweep is) and :mod:`.study` (running one)."""
