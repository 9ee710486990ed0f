"""How each family's results are drawn, local and hosted alike (one result type per family), for the pages."""
