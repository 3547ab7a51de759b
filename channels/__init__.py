"""Channel adapters: one module per platform, each paired with a local emulator in `channels.emulators`."""
