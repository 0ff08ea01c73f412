"""The activity journal (journal_activite): every action, recorded in its own transaction."""
