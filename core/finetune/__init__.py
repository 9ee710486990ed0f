"""Fine-tuning: labelled data in, the four training arms compared on a held-out split."""
