"""Point clouds from artifacts and ego-view (EgoX) rendering."""
