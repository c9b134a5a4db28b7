"""What a person sees on the console: the known-benign third-party warnings filtered at our entry
points (`benign_warnings`), and progress that redraws a bar on a terminal but prints a bounded
number of plain lines in a log (`progress`)."""
