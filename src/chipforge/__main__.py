from chipforge.cli import main

main()
