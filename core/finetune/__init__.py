"""Fine-tuning: labelled data in, the arms (use as is, prompt with examples, three ways of training, call an API)
compared on a held-out split."""
