"""Project analysis (POST /improve/analyze). Kept light: worker processes import checks.py alone."""
