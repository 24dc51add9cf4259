"""Meeting reports: one self-contained HTML page or Markdown, in Chinese or English."""
