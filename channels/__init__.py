"""Channel adapters, one module per platform, each paired with an emulator in channels.emulators."""
