"""The fleet's state in one read: tables read in bulk, judged against a set, folded into a picture."""
