"""The console's screens: the console itself, its forms and its dialogs."""
