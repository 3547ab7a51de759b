from broadcaster.cli import main

main()
