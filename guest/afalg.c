int main(void) { return 0; }  /* placeholder until the guest program lands */
