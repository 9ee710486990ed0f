"""Fine-tuning: labelled data in, the arms (use as is, three ways of training, call an API) compared on a held-out split."""
