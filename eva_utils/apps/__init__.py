"""The edges: the command line, the Gradio app, reports, Colab helpers. The only layer that prints, parses argv and names flags."""
